"""The support desk on the running platform: real sagas' history, problems, actions."""

from __future__ import annotations

import signal
from typing import Any

import httpx

from bazaar.kit.testing import wait_for
from bazaar.stack.supervisor import Stack
from tests.e2e.conftest import E2EUser, MakeUser
from tests.e2e.shopping import (
    ANSWERS_LATE,
    DECLINES,
    add_card,
    final_order,
    list_item,
    place_order,
)

CONFIRMED_ORDER_STORY = [
    "bazaar.orders.order.created",
    "bazaar.catalog.command.reserve_stock",
    "bazaar.catalog.stock.reserved",
    "bazaar.payments.command.charge",
    "bazaar.payments.payment.succeeded",
    # Confirmed in the transaction that sends the commit (the command first), then the
    # catalog's answer ends the saga.
    "bazaar.catalog.command.commit_stock",
    "bazaar.orders.order.confirmed",
    "bazaar.catalog.stock.committed",
]
DECLINED_ORDER_STORY = [
    "bazaar.orders.order.created",
    "bazaar.catalog.command.reserve_stock",
    "bazaar.catalog.stock.reserved",
    "bazaar.payments.command.charge",
    "bazaar.payments.payment.failed",
    "bazaar.catalog.command.release_stock",
    "bazaar.catalog.stock.released",
    "bazaar.orders.order.cancelled",
]


async def timeline(
    gateway: httpx.AsyncClient, staff: E2EUser, entity_id: str, until: list[str]
) -> list[dict[str, Any]]:
    """The entity's timeline once every type of ``until`` is in it (ingestion is async)."""

    async def complete() -> list[dict[str, Any]] | None:
        response = await gateway.get(
            "/api/support/timeline",
            params={"entity_id": entity_id, "limit": 200},
            headers=staff.headers,
        )
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        types = {item["type"] for item in items}
        return items if set(until) <= types else None

    return await wait_for(complete, timeout=30, message=f"the timeline of {entity_id}")


def in_order(items: list[dict[str, Any]], story: list[str]) -> list[str]:
    """The story's types as they first appear in the timeline, in its order."""
    seen: list[str] = []
    for item in items:
        if item["type"] in story and item["type"] not in seen:
            seen.append(item["type"])
    return seen


async def test_a_confirmed_orders_timeline_tells_its_whole_story_under_one_correlation_id(
    gateway: httpx.AsyncClient, seller: E2EUser, customer: E2EUser, make_user: MakeUser
) -> None:
    support = await make_user("support")
    item = await list_item(gateway, seller)
    method = await add_card(gateway, customer)
    order = await final_order(
        gateway,
        customer,
        (await place_order(gateway, customer, [(item["id"], 1)], method)).json()["id"],
    )
    assert order["status"] == "confirmed"

    items = await timeline(gateway, support, order["id"], CONFIRMED_ORDER_STORY)
    assert in_order(items, CONFIRMED_ORDER_STORY) == CONFIRMED_ORDER_STORY
    story = [item for item in items if item["type"] in CONFIRMED_ORDER_STORY]
    assert {item["correlation_id"] for item in story} == {order["id"]}
    times = [item["occurred_at"] for item in items]
    assert times == sorted(times)
    assert all(item["trace_id"] for item in story)
    # The payment's own timeline leads back to the order.
    payment_items = await timeline(
        gateway, support, order["payment_id"], ["bazaar.payments.payment.succeeded"]
    )
    assert order["id"] in {item["correlation_id"] for item in payment_items}


async def test_a_declined_order_is_retried_from_the_support_desk(
    gateway: httpx.AsyncClient, seller: E2EUser, customer: E2EUser, make_user: MakeUser
) -> None:
    support = await make_user("support")
    item = await list_item(gateway, seller)
    method = await add_card(gateway, customer, DECLINES)
    order = await final_order(
        gateway,
        customer,
        (await place_order(gateway, customer, [(item["id"], 1)], method)).json()["id"],
    )
    assert order["status_reason"] == "payment_declined"
    items = await timeline(gateway, support, order["id"], DECLINED_ORDER_STORY)
    assert in_order(items, DECLINED_ORDER_STORY) == DECLINED_ORDER_STORY

    ask = {
        "action": "retry_order",
        "target_id": order["id"],
        "reason": "customer says the card works now",
    }
    created = await gateway.post("/api/support/actions", json=ask, headers=support.headers)
    assert created.status_code == 202, created.text
    action = created.json()
    assert action["requested_by"] == support.id

    async def done() -> dict[str, Any] | None:
        response = await gateway.get(
            f"/api/support/actions/{action['id']}", headers=support.headers
        )
        body: dict[str, Any] = response.json()
        return body if body["status"] != "pending" else None

    outcome = await wait_for(done, timeout=30, message="the action's outcome")
    assert outcome["status"] == "succeeded", outcome
    # The same card declines again: the retried order ends cancelled once more.
    retried = await wait_for(
        lambda: _retried_and_ended(gateway, customer, order["id"]), timeout=60, message="retry"
    )
    assert retried["status_reason"] == "payment_declined"
    assert retried["payment_id"] != order["payment_id"]
    items = await timeline(
        gateway,
        support,
        order["id"],
        ["bazaar.support.action.requested", "bazaar.orders.order.retried"],
    )
    assert items[-1]["occurred_at"] >= items[0]["occurred_at"]

    again = await gateway.post("/api/support/actions", json=ask, headers=support.headers)
    assert again.json()["id"] == action["id"]


async def _retried_and_ended(
    gateway: httpx.AsyncClient, customer: E2EUser, order_id: str
) -> dict[str, Any] | None:
    body: dict[str, Any] = (
        await gateway.get(f"/api/orders/{order_id}", headers=customer.headers)
    ).json()
    retried = body["payment_id"] is not None and body["status"] == "cancelled"
    return body if retried and body["updated_at"] > body["created_at"] else None


async def test_customers_and_sellers_get_no_support_desk(
    gateway: httpx.AsyncClient, seller: E2EUser, customer: E2EUser
) -> None:
    for user in (seller, customer):
        for path in ("/api/support/problems", "/api/support/operations", "/api/support/actions"):
            response = await gateway.get(path, headers=user.headers)
            assert response.status_code == 403, path


async def test_an_order_stuck_while_payments_is_down_is_a_problem_until_it_ends(
    stack: Stack,
    gateway: httpx.AsyncClient,
    seller: E2EUser,
    customer: E2EUser,
    make_user: MakeUser,
) -> None:
    """Payments dies while the provider holds the (late-answer) card's charge: the order
    waits in charging, support lists it, and once payments is back it ends by itself."""
    support = await make_user("support")
    item = await list_item(gateway, seller)
    method = await add_card(gateway, customer, ANSWERS_LATE)
    created = await place_order(gateway, customer, [(item["id"], 1)], method)
    assert created.status_code == 201, created.text
    order_id = created.json()["id"]

    async def charging() -> bool:
        order = (await gateway.get(f"/api/orders/{order_id}", headers=customer.headers)).json()
        if order["payment_id"] is None:
            return False
        payment = await gateway.get(
            f"/api/payments/{order['payment_id']}", headers=customer.headers
        )
        return payment.status_code == 200 and payment.json()["status"] == "processing"

    await wait_for(charging, timeout=30, message="the charge to be with the provider")
    await stack.kill("payments", 1, signal.SIGKILL)

    async def listed() -> bool:
        response = await gateway.get(
            "/api/support/problems", params={"kind": "order_stuck"}, headers=support.headers
        )
        assert response.status_code == 200, response.text
        return any(problem["entity_id"] == order_id for problem in response.json()["items"])

    try:
        await wait_for(listed, timeout=60, message="the stuck order among the problems")
    finally:
        await stack.start_replica("payments", 1)

    assert (await final_order(gateway, customer, order_id, timeout=120))["status"] == "confirmed"

    async def resolved() -> bool:
        return not await listed()

    await wait_for(resolved, timeout=60, message="the problem to be resolved")
