"""Every order ends confirmed or cancelled, and money matches, whatever fails on the way."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import pytest

from bazaar.kit.db import asyncpg_dsn
from bazaar.kit.testing import wait_for
from bazaar.stack.console import QuietOutput
from bazaar.stack.supervisor import Stack
from tests.e2e.conftest import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    E2EUser,
    MakeUser,
    create_user,
    login,
    small_pools,
)
from tests.e2e.shopping import (
    APPROVES,
    DECLINES,
    add_card,
    final_order,
    list_item,
    net_charged,
    place_order,
    sandbox_charges,
)


class OrderRun:
    """Orders placed in the background while a test breaks things."""

    def __init__(self, gateway: httpx.AsyncClient, buyers: list[tuple[E2EUser, str]], item: str):
        self.gateway = gateway
        self.buyers = buyers
        self.item = item
        self.created: list[tuple[E2EUser, str]] = []
        self.refused = 0

    async def run(self, total: int, max_attempts: int = 5000) -> None:
        """Place orders until ``total`` were created; refusals while a service is down
        (the gateway answers 502/503 at once) are counted and the run goes on."""
        for n in range(max_attempts):
            if len(self.created) >= total:
                return
            buyer, method = self.buyers[n % len(self.buyers)]
            try:
                response = await place_order(self.gateway, buyer, [(self.item, 1)], method)
            except httpx.HTTPError:
                self.refused += 1
                continue
            if response.status_code == 201:
                self.created.append((buyer, response.json()["id"]))
            else:
                # The orders service is down right now: nothing was created.
                assert response.status_code in (502, 503, 504), response.text
                self.refused += 1

    async def finals(self, timeout: float = 240.0) -> list[dict[str, Any]]:
        return list(
            await asyncio.gather(
                *(final_order(self.gateway, buyer, order, timeout) for buyer, order in self.created)
            )
        )


async def assert_money_matches(stack: Stack, finals: list[dict[str, Any]]) -> None:
    """The provider's net charges for these orders equal the sum of the confirmed ones."""
    payment_ids = {order["payment_id"] for order in finals if order["payment_id"]}
    charges = [
        charge
        for charge in await sandbox_charges(stack)
        if any(payment_id in charge["idempotency_key"] for payment_id in payment_ids)
    ]
    confirmed = sum(order["total"] for order in finals if order["status"] == "confirmed")
    assert net_charged(charges) == confirmed
    # Never two successful charges for one payment.
    succeeded_keys = [c["idempotency_key"] for c in charges if c["status"] == "succeeded"]
    assert len(succeeded_keys) == len(set(succeeded_keys))


async def buyers_with_cards(
    gateway: httpx.AsyncClient, make_user: MakeUser, cards: list[str]
) -> list[tuple[E2EUser, str]]:
    buyers = [await make_user() for _ in cards]
    methods = await asyncio.gather(
        *(add_card(gateway, buyer, card) for buyer, card in zip(buyers, cards, strict=True))
    )
    return list(zip(buyers, methods, strict=True))


async def test_killing_orders_then_payments_mid_run_loses_no_order_and_no_money(
    stack: Stack, gateway: httpx.AsyncClient, seller: E2EUser, make_user: MakeUser
) -> None:
    item = await list_item(gateway, seller, price=700, stock=None)
    buyers = await buyers_with_cards(gateway, make_user, [APPROVES, APPROVES, DECLINES])
    run = OrderRun(gateway, buyers, item["id"])
    placing = asyncio.create_task(run.run(60))
    try:
        await _when(lambda: len(run.created) >= 10, placing)
        await stack.kill("orders", 1, signal.SIGKILL)
        await stack.start_replica("orders", 1)
        await _when(lambda: len(run.created) >= 25, placing)
        await stack.kill("payments", 1, signal.SIGKILL)
        await stack.start_replica("payments", 1)
        await placing
    finally:
        placing.cancel()
    finals = await run.finals()
    assert len(finals) == 60
    assert {order["status"] for order in finals} <= {"confirmed", "cancelled"}
    assert any(order["status"] == "confirmed" for order in finals)
    await assert_money_matches(stack, finals)


async def test_a_broker_restart_mid_run_loses_no_order_and_no_money(
    stack: Stack, gateway: httpx.AsyncClient, seller: E2EUser, make_user: MakeUser
) -> None:
    item = await list_item(gateway, seller, price=650, stock=None)
    buyers = await buyers_with_cards(gateway, make_user, [APPROVES, APPROVES, DECLINES])
    run = OrderRun(gateway, buyers, item["id"])
    placing = asyncio.create_task(run.run(40))
    try:
        await _when(lambda: len(run.created) >= 10, placing)
        await stack.restart_broker()
        await placing
    finally:
        placing.cancel()
    finals = await run.finals()
    assert len(finals) == 40
    assert {order["status"] for order in finals} <= {"confirmed", "cancelled"}
    assert any(order["status"] == "confirmed" for order in finals)
    await assert_money_matches(stack, finals)


@pytest.fixture
async def stack_delivering_everything_three_times(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Stack]:
    """A stack of its own whose every message (command and reply) is delivered three times."""
    external = os.environ.get("BAZAAR_TEST_DATABASE_URL")
    chaotic = Stack(
        tmp_path_factory.mktemp("chaos"),
        port=0,
        psp_port=0,
        postgres_url=external,
        database_prefix=f"bzchaos_{uuid.uuid4().hex[:6]}" if external else None,
        env={
            "BAZAAR_BOOTSTRAP_ADMIN_EMAIL": ADMIN_EMAIL,
            "BAZAAR_BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "BAZAAR_CHAOS_DUPLICATE_DELIVERIES": "3",
            **small_pools(3),
        },
        output=QuietOutput(),
    )
    try:
        await chaotic.start()
        yield chaotic
    finally:
        await chaotic.stop()
        if external and chaotic.admin_url is not None:
            await chaotic.drop_databases()


async def test_every_command_and_reply_delivered_three_times_changes_nothing(
    stack_delivering_everything_three_times: Stack,
) -> None:
    stack = stack_delivering_everything_three_times
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=15) as gateway:
        token = await login(gateway, ADMIN_EMAIL, ADMIN_PASSWORD)
        me = (
            await gateway.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
        ).json()
        admin = E2EUser(me["id"], ADMIN_EMAIL, ADMIN_PASSWORD, me["roles"], token)
        seller = await create_user(gateway, admin, ["seller"])
        item = await list_item(gateway, seller, price=500, stock=8)

        async def a_buyer() -> E2EUser:
            return await create_user(gateway, admin)

        buyers = await buyers_with_cards(gateway, a_buyer, [APPROVES, APPROVES, DECLINES, APPROVES])
        run = OrderRun(gateway, buyers, item["id"])
        await run.run(8)
        finals = await run.finals(timeout=120)
        outcomes = sorted((order["status"], order["status_reason"]) for order in finals)
        # 8 orders of one unit, 8 in stock; two of them by the buyer whose card declines.
        assert outcomes.count(("cancelled", "payment_declined")) == 2
        assert outcomes.count(("confirmed", None)) == 6
        stock = (await gateway.get(f"/api/catalog/items/{item['id']}")).json()["stock"]
        assert stock == 2
        await assert_money_matches(stack, finals)
        # Confirmed at the payment, each sale's stock is committed right after, once.
        confirmed = [order["id"] for order in finals if order["status"] == "confirmed"]
        await wait_for(
            lambda: _reservations_committed(stack, confirmed),
            timeout=60,
            message="the confirmed orders' stock committed",
        )


async def _reservations_committed(stack: Stack, order_ids: list[str]) -> bool:
    """Whether the catalog holds every one of these orders' reservations (a first round's
    reservation id is its order's id) committed, each line once."""
    connection = await asyncpg.connect(asyncpg_dsn(stack.database_urls["catalog"]))
    try:
        rows = await connection.fetch(
            "SELECT reservation_id::text AS id, status FROM stock_reservations "
            "WHERE reservation_id = ANY($1::uuid[])",
            order_ids,
        )
    finally:
        await connection.close()
    return sorted(row["id"] for row in rows) == sorted(order_ids) and all(
        row["status"] == "committed" for row in rows
    )


async def _when(
    condition: Callable[[], bool], placing: asyncio.Task[None], timeout: float = 60.0
) -> None:
    """Wait until the run reached ``condition``; a run that failed fails the test at once."""

    async def check() -> bool:
        if placing.done():
            placing.result()  # raises what stopped the run
            return True
        return condition()

    await wait_for(check, timeout=timeout, message="the run to progress")
