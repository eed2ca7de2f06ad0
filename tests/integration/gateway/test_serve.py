"""``serve``: the gateway as a process of its own, with several workers, stopped by SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import aiohttp
import psutil

from bazaar.kit.testing import wait_for
from bazaar.stack.ports import free_port, port_open
from tests.integration.gateway.conftest import StartUpstream


def start_gateway_process(env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-c", "from bazaar.gateway.app import serve; serve()"]
    return subprocess.Popen(command, env=env)


async def test_serve_runs_workers_on_one_port_and_stops_them_all(
    start_upstream: StartUpstream, http: aiohttp.ClientSession
) -> None:
    _, catalog = await start_upstream("catalog")
    port = free_port()
    env = {
        **os.environ,
        "BAZAAR_GATEWAY_PORT": str(port),
        "BAZAAR_GATEWAY_WORKERS": "2",
        "BAZAAR_GATEWAY_UPSTREAMS": json.dumps({"catalog": [catalog.url]}),
        "BAZAAR_LOG_FORMAT": "console",
    }
    process = start_gateway_process(env)
    try:
        await wait_for(lambda: port_open("127.0.0.1", port), timeout=30, message="the gateway")
        workers = psutil.Process(process.pid).children(recursive=True)
        assert any("spawn_main" in " ".join(child.cmdline()) for child in workers)
        for _ in range(10):  # new connections land on either worker
            async with (
                aiohttp.ClientSession() as fresh,
                fresh.get(f"http://127.0.0.1:{port}/api/catalog/items") as response,
            ):
                assert response.status == 200
                assert (await response.json())["upstream"] == "catalog"
        process.send_signal(signal.SIGTERM)
        await wait_for(lambda: process.poll() is not None, timeout=15, message="the exit")
        await wait_for(
            lambda: not any(child.is_running() and child.status() != "zombie" for child in workers),
            timeout=15,
            message="the workers to stop",
        )
        assert not port_open("127.0.0.1", port)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


async def test_workers_stop_when_the_gateway_is_killed(
    start_upstream: StartUpstream,
) -> None:
    _, catalog = await start_upstream("catalog")
    port = free_port()
    env = {
        **os.environ,
        "BAZAAR_GATEWAY_PORT": str(port),
        "BAZAAR_GATEWAY_WORKERS": "3",
        "BAZAAR_GATEWAY_UPSTREAMS": json.dumps({"catalog": [catalog.url]}),
    }
    process = start_gateway_process(env)
    try:
        await wait_for(lambda: port_open("127.0.0.1", port), timeout=30, message="the gateway")
        parent = psutil.Process(process.pid)
        await wait_for(
            lambda: sum("spawn_main" in " ".join(c.cmdline()) for c in parent.children()) == 2,
            timeout=30,
            message="two workers",
        )
        workers = parent.children(recursive=True)
        process.kill()  # no chance to stop its workers itself
        process.wait(timeout=10)
        await wait_for(
            lambda: not any(child.is_running() and child.status() != "zombie" for child in workers),
            timeout=15,
            message="orphaned workers to stop",
        )
        assert not port_open("127.0.0.1", port)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
