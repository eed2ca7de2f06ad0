"""Orders end to end: through the gateway, the real services, the broker and the sandbox."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from bazaar.stack.supervisor import Stack
from tests.e2e.conftest import E2EUser, MakeUser
from tests.e2e.shopping import (
    ANSWERS_LATE,
    APPROVES,
    DECLINES,
    FAILS_FIRST_ATTEMPT,
    INSUFFICIENT_FUNDS,
    add_card,
    final_order,
    list_item,
    place_order,
    sandbox_charges,
)


@pytest.mark.parametrize(
    ("card", "status", "reason"),
    [
        (APPROVES, "confirmed", None),
        (DECLINES, "cancelled", "payment_declined"),
        (INSUFFICIENT_FUNDS, "cancelled", "payment_declined"),
        (FAILS_FIRST_ATTEMPT, "confirmed", None),
        (ANSWERS_LATE, "confirmed", None),
    ],
)
async def test_each_sandbox_card_through_a_whole_order(
    stack: Stack,
    gateway: httpx.AsyncClient,
    seller: E2EUser,
    customer: E2EUser,
    card: str,
    status: str,
    reason: str | None,
) -> None:
    item = await list_item(gateway, seller, price=1250, stock=5)
    method = await add_card(gateway, customer, card)

    created = await place_order(gateway, customer, [(item["id"], 2)], method)
    assert created.status_code == 201, created.text
    order = created.json()
    assert order["status"] == "pending"
    assert order["total"] == 2500
    assert order["items"][0]["line_total"] == 2500

    final = await final_order(gateway, customer, order["id"], timeout=120)
    assert final["status"] == status
    assert final["status_reason"] == reason
    stock = (await gateway.get(f"/api/catalog/items/{item['id']}")).json()["stock"]
    assert stock == (3 if status == "confirmed" else 5)

    charges = [
        charge
        for charge in await sandbox_charges(stack)
        if final["payment_id"] and final["payment_id"] in charge["idempotency_key"]
    ]
    succeeded = [charge for charge in charges if charge["status"] == "succeeded"]
    assert len(succeeded) == (1 if status == "confirmed" else 0)
    if status == "confirmed":
        payment = await gateway.get(
            f"/api/payments/{final['payment_id']}", headers=customer.headers
        )
        assert payment.json()["status"] == "succeeded"
        assert payment.json()["amount"] == 2500


async def test_twenty_buyers_racing_for_five_units(
    gateway: httpx.AsyncClient, seller: E2EUser, make_user: MakeUser
) -> None:
    item = await list_item(gateway, seller, stock=5)
    buyers = [await make_user() for _ in range(20)]
    methods = await asyncio.gather(*(add_card(gateway, buyer) for buyer in buyers))
    created = await asyncio.gather(
        *(
            place_order(gateway, b, [(item["id"], 1)], m)
            for b, m in zip(buyers, methods, strict=True)
        )
    )
    assert all(response.status_code == 201 for response in created)
    finals = await asyncio.gather(
        *(
            final_order(gateway, buyer, response.json()["id"], timeout=90)
            for buyer, response in zip(buyers, created, strict=True)
        )
    )
    outcomes = sorted((order["status"], order["status_reason"]) for order in finals)
    assert outcomes == [("cancelled", "out_of_stock")] * 15 + [("confirmed", None)] * 5
    assert (await gateway.get(f"/api/catalog/items/{item['id']}")).json()["stock"] == 0


async def test_the_same_idempotency_key_six_times_at_once_makes_one_order_and_one_charge(
    stack: Stack, gateway: httpx.AsyncClient, seller: E2EUser, customer: E2EUser
) -> None:
    item = await list_item(gateway, seller)
    method = await add_card(gateway, customer)
    key = f"checkout-{uuid.uuid4()}"
    answers = await asyncio.gather(
        *(place_order(gateway, customer, [(item["id"], 1)], method, key=key) for _ in range(6))
    )
    assert {response.status_code for response in answers} == {201}
    assert len({response.json()["id"] for response in answers}) == 1
    order = await final_order(gateway, customer, answers[0].json()["id"])
    assert order["status"] == "confirmed"
    mine = (await gateway.get("/api/orders", headers=customer.headers)).json()["items"]
    assert [listed["id"] for listed in mine] == [order["id"]]
    charges = [
        c for c in await sandbox_charges(stack) if order["payment_id"] in c["idempotency_key"]
    ]
    assert len(charges) == 1

    reused = await place_order(gateway, customer, [(item["id"], 2)], method, key=key)
    assert reused.status_code == 422
    assert reused.json()["code"] == "idempotency_key_reused"


async def test_cancelling_a_confirmed_order_refunds_and_restocks(
    stack: Stack, gateway: httpx.AsyncClient, seller: E2EUser, customer: E2EUser
) -> None:
    item = await list_item(gateway, seller, price=999, stock=4)
    method = await add_card(gateway, customer)
    created = await place_order(gateway, customer, [(item["id"], 3)], method)
    order = await final_order(gateway, customer, created.json()["id"])
    assert order["status"] == "confirmed"
    assert (await gateway.get(f"/api/catalog/items/{item['id']}")).json()["stock"] == 1

    cancel = await gateway.post(f"/api/orders/{order['id']}/cancel", headers=customer.headers)
    assert cancel.status_code == 202, cancel.text
    cancelled = await final_order(gateway, customer, order["id"])
    assert cancelled["status"] == "cancelled"
    assert cancelled["status_reason"] == "user_request"

    async def restocked() -> bool:
        item_now = (await gateway.get(f"/api/catalog/items/{item['id']}")).json()
        return bool(item_now["stock"] == 4)

    from bazaar.kit.testing import wait_for

    await wait_for(restocked, timeout=30, message="stock back")
    payment = (
        await gateway.get(f"/api/payments/{order['payment_id']}", headers=customer.headers)
    ).json()
    assert payment["status"] == "refunded"
    assert payment["refunded_amount"] == 2997
    charges = [
        c for c in await sandbox_charges(stack) if order["payment_id"] in c["idempotency_key"]
    ]
    assert [charge["refunded_amount"] for charge in charges] == [2997]


async def test_another_users_order_and_payment_are_404(
    gateway: httpx.AsyncClient, seller: E2EUser, customer: E2EUser, make_user: MakeUser
) -> None:
    item = await list_item(gateway, seller)
    method = await add_card(gateway, customer)
    order = await final_order(
        gateway,
        customer,
        (await place_order(gateway, customer, [(item["id"], 1)], method)).json()["id"],
    )
    stranger = await make_user()
    for path in (
        f"/api/orders/{order['id']}",
        f"/api/payments/{order['payment_id']}",
    ):
        response = await gateway.get(path, headers=stranger.headers)
        assert response.status_code == 404, path
        assert "user_id" not in response.json()
    cancel = await gateway.post(f"/api/orders/{order['id']}/cancel", headers=stranger.headers)
    assert cancel.status_code == 404
    foreign_method = await place_order(gateway, stranger, [(item["id"], 1)], method)
    assert foreign_method.status_code == 422
    assert foreign_method.json()["code"] == "payment_method_invalid"


def order_body(item_id: str, method_id: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "items": [{"item_id": item_id, "quantity": 1}],
        "payment_method_id": method_id,
    }
    body.update(changes)
    return body


@pytest.mark.parametrize(
    "change",
    [
        {"items": []},
        {"items": "everything"},
        {"items": [{"item_id": "not-a-uuid", "quantity": 1}]},
        {"items": [{"quantity": 1}]},
        {"payment_method_id": "not-a-uuid"},
        {"payment_method_id": None},
        {"unexpected": True},
    ],
)
async def test_invalid_orders_are_refused_and_leave_nothing_behind(
    gateway: httpx.AsyncClient, seller: E2EUser, customer: E2EUser, change: dict[str, Any]
) -> None:
    item = await list_item(gateway, seller)
    method = await add_card(gateway, customer)
    response = await gateway.post(
        "/api/orders", json=order_body(item["id"], method, **change), headers=customer.headers
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert (await gateway.get("/api/orders", headers=customer.headers)).json()["items"] == []


@pytest.mark.parametrize("quantity", [0, -1, 1001, 1.5, "2"])
async def test_quantities_outside_one_to_a_thousand_are_refused(
    gateway: httpx.AsyncClient, seller: E2EUser, customer: E2EUser, quantity: Any
) -> None:
    item = await list_item(gateway, seller)
    method = await add_card(gateway, customer)
    response = await gateway.post(
        "/api/orders",
        json=order_body(item["id"], method, items=[{"item_id": item["id"], "quantity": quantity}]),
        headers=customer.headers,
    )
    assert response.status_code == 422, response.text


async def test_orders_refuse_too_many_lines_unknown_items_and_mixed_currencies(
    gateway: httpx.AsyncClient, seller: E2EUser, customer: E2EUser
) -> None:
    item = await list_item(gateway, seller)
    method = await add_card(gateway, customer)
    too_many = [{"item_id": str(uuid.uuid4()), "quantity": 1} for _ in range(101)]
    response = await gateway.post(
        "/api/orders", json=order_body(item["id"], method, items=too_many), headers=customer.headers
    )
    assert response.status_code == 422
    unknown = await place_order(gateway, customer, [(str(uuid.uuid4()), 1)], method)
    assert unknown.status_code == 422
    dollars = await gateway.post(
        "/api/catalog/items",
        json={"kind": "good", "title": "Dollar thing", "price": 100, "currency": "USD", "stock": 3},
        headers=seller.headers,
    )
    mixed = await place_order(
        gateway, customer, [(item["id"], 1), (dollars.json()["id"], 1)], method
    )
    assert mixed.status_code == 422
    withdrawn = await list_item(gateway, seller)
    await gateway.patch(
        f"/api/catalog/items/{withdrawn['id']}", json={"active": False}, headers=seller.headers
    )
    refused = await place_order(gateway, customer, [(withdrawn["id"], 1)], method)
    assert refused.status_code == 422
