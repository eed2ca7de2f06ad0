"""What end-to-end tests of buying need: items, cards, orders, and the provider's ledger."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from bazaar.kit.testing import wait_for
from bazaar.stack.supervisor import Stack
from tests.e2e.conftest import E2EUser

APPROVES = "4242424242424242"
DECLINES = "4000000000000002"
INSUFFICIENT_FUNDS = "4000000000009995"
FAILS_FIRST_ATTEMPT = "4000000000000119"
ANSWERS_LATE = "4000000000000259"
SANDBOX_API_KEY = "sk_test_bazaar"
TERMINAL = {"confirmed", "cancelled"}


async def list_item(
    gateway: httpx.AsyncClient, seller: E2EUser, *, price: int = 1500, stock: int | None = 10
) -> dict[str, Any]:
    response = await gateway.post(
        "/api/catalog/items",
        json={
            "kind": "good" if stock is not None else "service",
            "title": f"Item {uuid.uuid4().hex[:6]}",
            "description": "for an end-to-end test",
            "price": price,
            "currency": "EUR",
            "stock": stock,
        },
        headers=seller.headers,
    )
    assert response.status_code == 201, response.text
    item: dict[str, Any] = response.json()
    return item


async def add_card(gateway: httpx.AsyncClient, user: E2EUser, number: str = APPROVES) -> str:
    response = await gateway.post(
        "/api/payments/methods",
        json={"card_number": number, "exp_month": 12, "exp_year": 2040, "cvc": "123"},
        headers=user.headers,
    )
    assert response.status_code == 201, response.text
    method_id: str = response.json()["id"]
    return method_id


async def place_order(
    gateway: httpx.AsyncClient,
    buyer: E2EUser,
    lines: list[tuple[str, int]],
    method_id: str,
    *,
    key: str | None = None,
) -> httpx.Response:
    headers = dict(buyer.headers)
    if key is not None:
        headers["Idempotency-Key"] = key
    return await gateway.post(
        "/api/orders",
        json={
            "items": [{"item_id": item_id, "quantity": quantity} for item_id, quantity in lines],
            "payment_method_id": method_id,
        },
        headers=headers,
    )


async def final_order(
    gateway: httpx.AsyncClient, buyer: E2EUser, order_id: str, timeout: float = 60.0
) -> dict[str, Any]:
    """The order once it reached ``confirmed`` or ``cancelled`` by itself."""

    async def terminal() -> dict[str, Any] | None:
        response = await gateway.get(f"/api/orders/{order_id}", headers=buyer.headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body if body["status"] in TERMINAL else None

    return await wait_for(terminal, timeout=timeout, interval=0.1, message=f"order {order_id}")


async def sandbox_charges(stack: Stack) -> list[dict[str, Any]]:
    """Every charge the payment provider made, from its own ledger."""
    async with httpx.AsyncClient(base_url=stack.psp_url, timeout=10) as client:
        response = await client.get(
            "/v1/charges", headers={"Authorization": f"Bearer {SANDBOX_API_KEY}"}
        )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def net_charged(charges: list[dict[str, Any]]) -> int:
    return sum(
        charge["amount"] - charge["refunded_amount"]
        for charge in charges
        if charge["status"] == "succeeded"
    )
