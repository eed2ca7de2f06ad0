"""Replicas: sharing load, surviving a dead one, ejecting and restoring, deadlines."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from bazaar.kit.testing import wait_for
from bazaar.stack.ports import free_port, port_open
from tests.integration.gateway.conftest import Keys, StartGateway, StartUpstream
from tests.integration.gateway.standins import AuthStandIn, RunningServer

REPO = Path(__file__).resolve().parents[3]


async def test_two_replicas_share_the_load(
    start_upstream: StartUpstream, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    _a, a_server = await start_upstream("a")
    _b, b_server = await start_upstream("b")
    gateway = await start_gateway({"catalog": [a_server.url, b_server.url]})
    seen: Counter[str] = Counter()
    for _ in range(20):
        async with http.get(gateway.api("/api/catalog/items")) as response:
            seen[(await response.json())["upstream"]] += 1
    assert seen["a"] >= 5 and seen["b"] >= 5, seen


@pytest.fixture
def replica_processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def spawn_replica(name: str, processes: list[subprocess.Popen[bytes]]) -> tuple[str, int]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.gateway.replica_process",
            "--port",
            str(port),
            "--name",
            name,
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    processes.append(process)
    return f"http://127.0.0.1:{port}", port


async def test_killing_a_replica_mid_run_loses_no_idempotent_request(
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    replica_processes: list[subprocess.Popen[bytes]],
) -> None:
    a_url, a_port = spawn_replica("a", replica_processes)
    b_url, b_port = spawn_replica("b", replica_processes)
    await wait_for(
        lambda: port_open("127.0.0.1", a_port) and port_open("127.0.0.1", b_port),
        timeout=20,
        message="replica processes",
    )
    gateway = await start_gateway({"catalog": [a_url, b_url]}, health_check_interval_seconds=1.0)
    victim = replica_processes[0]
    statuses: Counter[int] = Counter()
    served_by: Counter[str] = Counter()
    completed = 0
    killed = asyncio.Event()

    async def client(worker: int) -> None:
        nonlocal completed
        for number in range(60):
            path = f"/api/catalog/items/{worker}-{number}"
            async with http.get(gateway.api(path)) as response:
                statuses[response.status] += 1
                if response.status == 200:
                    served_by[(await response.json())["upstream"]] += 1
            completed += 1
            if completed == 100 and not killed.is_set():
                victim.send_signal(signal.SIGKILL)
                killed.set()

    await asyncio.gather(*(client(worker) for worker in range(8)))
    assert killed.is_set()
    assert statuses == Counter({200: 480}), statuses
    assert served_by["a"] > 0 and served_by["b"] > served_by["a"]
    replica = gateway.gateway.balancer.pool("catalog").replicas[0]
    assert not replica.healthy


async def test_a_failing_replica_is_ejected_and_comes_back_when_healthy(
    start_upstream: StartUpstream, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    a, a_server = await start_upstream("a")
    _b, b_server = await start_upstream("b")
    gateway = await start_gateway({"catalog": [a_server.url, b_server.url]})
    replica_a = gateway.gateway.balancer.pool("catalog").replicas[0]

    a.healthy = False
    await wait_for(lambda: not replica_a.healthy, timeout=5, message="a to be ejected")
    before = a.requests
    for _ in range(10):
        async with http.get(gateway.api("/api/catalog/items")) as response:
            assert (await response.json())["upstream"] == "b"
    assert a.requests == before

    a.healthy = True
    await wait_for(lambda: replica_a.healthy, timeout=5, message="a to come back")
    seen = set()
    for _ in range(10):
        async with http.get(gateway.api("/api/catalog/items")) as response:
            seen.add((await response.json())["upstream"])
    assert seen == {"a", "b"}


async def test_a_replica_that_refuses_connections_is_skipped_at_once(
    start_upstream: StartUpstream, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    _b, b_server = await start_upstream("b")
    dead = f"http://127.0.0.1:{free_port()}"
    # Checks too rare to notice: the proxy's own connection failure must eject it.
    gateway = await start_gateway(
        {"catalog": [dead, b_server.url]}, health_check_interval_seconds=60
    )
    for _ in range(6):
        # Even a POST: a connection that never opened carried nothing.
        async with http.post(gateway.api("/api/catalog/items/x/y"), json={}) as response:
            assert response.status in (200, 401)
        async with http.get(gateway.api("/api/catalog/items")) as response:
            assert response.status == 200
            assert (await response.json())["upstream"] == "b"
    assert not gateway.gateway.balancer.pool("catalog").replicas[0].healthy


async def test_a_dropped_get_is_tried_on_another_replica(
    start_upstream: StartUpstream, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    a, a_server = await start_upstream("a")
    b, b_server = await start_upstream("b")
    gateway = await start_gateway({"catalog": [a_server.url, b_server.url]})
    # Both replicas drop ".../drop": a GET is tried on each, then answered 502.
    async with http.get(gateway.api("/api/catalog/items/drop")) as response:
        assert response.status == 502
        assert (await response.json())["code"] == "bad_gateway"
    assert a.requests_by_path["/api/catalog/items/drop"] >= 1
    assert b.requests_by_path["/api/catalog/items/drop"] >= 1


async def test_a_post_is_never_sent_twice_unless_it_has_an_idempotency_key(
    auth: tuple[AuthStandIn, RunningServer],
    start_upstream: StartUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    keys: Keys,
) -> None:
    a, a_server = await start_upstream("a")
    b, b_server = await start_upstream("b")
    gateway = await start_gateway({"auth": [auth[1].url], "orders": [a_server.url, b_server.url]})
    token = {"Authorization": f"Bearer {keys.current.token(['customer'])}"}
    path = "/api/orders/o1/drop"
    async with http.post(gateway.api(path), headers=token, json={}) as response:
        assert response.status == 502
    assert a.requests_by_path.get(path, 0) + b.requests_by_path.get(path, 0) == 1

    keyed = {**token, "Idempotency-Key": "order-42"}
    async with http.post(gateway.api(path), headers=keyed, json={}) as response:
        assert response.status == 502
    assert a.requests_by_path[path] + b.requests_by_path[path] == 3


async def test_an_empty_pool_answers_503(
    start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway({})  # no service is running yet
    async with http.get(gateway.api("/api/auctions")) as response:
        assert response.status == 503
        assert response.content_type == "application/problem+json"
        assert (await response.json())["code"] == "service_unavailable"
        assert "X-Request-ID" in response.headers


async def test_all_replicas_down_answers_503(
    start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    dead = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    gateway = await start_gateway({"catalog": dead}, health_check_interval_seconds=60)
    for _ in range(2):  # first: connections refused; then: every replica ejected
        async with http.get(gateway.api("/api/catalog/items")) as response:
            assert response.status == 503
            assert (await response.json())["code"] == "service_unavailable"


async def test_a_try_past_its_deadline_answers_504(
    start_upstream: StartUpstream, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    slow, slow_server = await start_upstream("slow")
    gateway = await start_gateway({"catalog": [slow_server.url]}, try_timeout_seconds=0.3)
    try:
        async with http.get(gateway.api("/api/catalog/items/hang")) as response:
            assert response.status == 504
            assert (await response.json())["code"] == "gateway_timeout"
    finally:
        slow.hang_released.set()
    # A deadline is not a dead replica.
    assert gateway.gateway.balancer.pool("catalog").replicas[0].healthy
