"""The supervised stack (the session's ``stack`` fixture): health, crashes, restarts, broker.

Tests that take a replica down bring it back before they end, so the stack stays
whole for the tests after them.
"""

from __future__ import annotations

import json
import signal

import asyncpg
import httpx
import pytest

from bazaar.auth.keys import ENCRYPTED_PEM_HEADER
from bazaar.kit.db import asyncpg_dsn
from bazaar.kit.testing import wait_for
from bazaar.stack.supervisor import Stack
from tests.e2e.conftest import E2EUser, MakeUser

pytestmark = pytest.mark.e2e


async def test_every_process_answers_its_health_checks(stack: Stack) -> None:
    async with httpx.AsyncClient(timeout=5.0) as client:
        for process in stack.all_processes():
            assert process.running, process
            for path in process.spec.health_paths():
                response = await client.get(f"{process.url}{path}")
                assert response.status_code == 200, (process.name, path, response.text)
    assert [process.name for process in stack.replicas("catalog")] == ["catalog.1", "catalog.2"]


async def test_the_gateway_knows_every_replica(stack: Stack, gateway: httpx.AsyncClient) -> None:
    assert stack.upstreams()["catalog"] == [p.url for p in stack.replicas("catalog")]
    response = await gateway.get("/api/health")
    assert response.status_code == 200, response.text


async def test_client_secrets_are_private_and_kept(stack: Stack) -> None:
    path = stack.data_dir / "secrets.json"
    assert path.stat().st_mode & 0o777 == 0o600
    stored = json.loads(path.read_text())["clients"]
    assert stored == stack.client_secrets
    assert "catalog" in stored
    assert "auth" not in stored


async def test_the_auth_database_holds_its_signing_keys_encrypted(stack: Stack) -> None:
    """A copy of the database directory alone signs nothing: the passphrase lives in the
    secrets file, beside it."""
    document = json.loads((stack.data_dir / "secrets.json").read_text())
    assert len(document["signing_key_passphrase"]) >= 32
    connection = await asyncpg.connect(asyncpg_dsn(stack.database_urls["auth"]))
    try:
        pems = [
            row["private_key_pem"]
            for row in await connection.fetch("SELECT private_key_pem FROM signing_keys")
        ]
    finally:
        await connection.close()
    assert pems
    assert all(pem.startswith(ENCRYPTED_PEM_HEADER) for pem in pems)


async def test_a_crashed_replica_is_restarted(stack: Stack) -> None:
    process = stack.replica("catalog", 2)
    old_pid, restarts = process.pid, process.restarts

    await stack.kill("catalog", 2, signal.SIGKILL, restart=True)

    await stack.wait_healthy("catalog", timeout=30)
    assert process.pid != old_pid
    assert process.restarts == restarts + 1


async def test_a_stopped_replica_stays_down_and_the_other_serves(
    stack: Stack, gateway: httpx.AsyncClient
) -> None:
    process = await stack.kill("catalog", 1, signal.SIGTERM)
    try:
        assert not process.running
        # uvicorn shuts down gracefully, then re-raises the signal it caught.
        assert process.returncode in (0, -signal.SIGTERM)
        assert any("shutdown complete" in line for line in process.recent)
        for _ in range(10):
            response = await gateway.get("/api/catalog/items")
            assert response.status_code == 200, response.text
        assert not process.running, "nobody restarts a replica that was stopped on purpose"
    finally:
        await stack.start_replica("catalog", 1)
    assert process.running


async def test_a_graceful_restart_of_every_replica(stack: Stack) -> None:
    before = {process.name: process.pid for process in stack.replicas("catalog")}
    await stack.restart("catalog")
    after = {process.name: process.pid for process in stack.replicas("catalog")}
    assert before.keys() == after.keys()
    assert all(before[name] != after[name] for name in before)


async def test_services_are_ready_again_after_the_broker_restarts(stack: Stack) -> None:
    await stack.restart_broker()
    await stack.wait_healthy(timeout=30)


async def test_a_seller_creates_an_item_through_the_gateway(
    gateway: httpx.AsyncClient, seller: E2EUser
) -> None:
    created = await gateway.post(
        "/api/catalog/items",
        json={
            "kind": "service",
            "title": "Piano lesson",
            "description": "One hour",
            "price": 4000,
            "currency": "EUR",
            "stock": None,
        },
        headers=seller.headers,
    )
    assert created.status_code == 201, created.text
    item = created.json()
    assert item["seller_id"] == seller.id

    async def listed() -> bool:
        response = await gateway.get(f"/api/catalog/items/{item['id']}")
        return response.status_code == 200 and response.json()["title"] == "Piano lesson"

    await wait_for(listed, timeout=10, message="the item to be readable through the gateway")


async def test_a_revoked_token_is_refused_by_the_gateway_in_front_of_every_service(
    gateway: httpx.AsyncClient, make_user: MakeUser
) -> None:
    """Only the gateway and auth check revocations; the gateway learns them from auth's
    feed, which answers only a service: the stack registers the gateway as one."""
    customer = await make_user()
    assert (await gateway.get("/api/orders", headers=customer.headers)).status_code == 200
    revoked = await gateway.post("/api/auth/revoke", data={"token": customer.token})
    assert revoked.status_code == 200

    async def refused() -> bool:
        response = await gateway.get("/api/orders", headers=customer.headers)
        return response.status_code == 401

    await wait_for(refused, timeout=10, message="the gateway to refuse the revoked token")


async def test_a_second_stack_on_the_same_data_directory_is_refused(stack: Stack) -> None:
    from bazaar.stack.supervisor import StackError

    intruder = Stack(stack.data_dir, port=0, psp_port=0)
    with pytest.raises(StackError, match="another bazaar stack is running"):
        await intruder.start()
    assert (stack.data_dir / "stack.json").exists(), "the running stack's state is untouched"
