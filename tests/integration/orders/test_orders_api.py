"""The orders HTTP surface: placing an order, who sees and lists what, idempotency, sales."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from bazaar.contracts import catalog as catalog_contract
from bazaar.contracts import orders as orders_contract
from tests.integration.orders.conftest import CLIENT_ID, ORDERS, Market, OpenMarket


async def test_an_order_is_priced_by_the_catalog_and_starts_pending(shop_front: Market) -> None:
    buyer, headers, method = shop_front.buyer()
    teapot = await shop_front.new_item(price=1500, title="Teapot")
    cups = await shop_front.new_item(price=250, title="Cup")

    order = await shop_front.place(headers, method, (teapot, 1), (cups, 4))

    assert order["status"] == "pending" and order["status_reason"] is None
    assert order["user_id"] == buyer
    assert order["currency"] == "EUR"
    assert order["items"] == [
        {
            "item_id": teapot,
            "title": "Teapot",
            "unit_price": 1500,
            "quantity": 1,
            "line_total": 1500,
        },
        {"item_id": cups, "title": "Cup", "unit_price": 250, "quantity": 4, "line_total": 1000},
    ]
    assert order["total"] == 2500
    assert order["payment_id"] is None
    assert order["created_at"].endswith("Z") or order["created_at"].endswith("+00:00")
    # Prices and the method were asked for through the gateway, with orders' own token.
    assert all(caller is not None for _, _, caller in shop_front.gateway.requests)
    fetched = await shop_front.orders.get(f"{ORDERS}/{order['id']}", headers=headers)
    assert fetched.json() == order

    [created] = await shop_front.sent(orders_contract.OrderCreated, order["id"])
    assert created.data["total"] == 2500 and created.userid == buyer
    [reserve] = await shop_front.sent(catalog_contract.ReserveStock, order["id"])
    assert reserve.data["reservation_id"] == order["id"]
    assert {(line["item_id"], line["quantity"]) for line in reserve.data["lines"]} == {
        (teapot, 1),
        (cups, 4),
    }


def _body(item: str, method: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "items": [{"item_id": item, "quantity": 1}],
        "payment_method_id": method,
    }
    body.update(overrides)
    return body


ITEM = "__item__"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"items": []}, "items"),
        ({"items": [{"item_id": str(uuid.uuid4()), "quantity": 1} for _ in range(101)]}, "items"),
        ({"items": "teapot"}, "items"),
        ({"items": [{"item_id": "not-a-uuid", "quantity": 1}]}, "items.0.item_id"),
        ({"items": [{"quantity": 1}]}, "items.0.item_id"),
        ({"items": [{"item_id": ITEM}]}, "items.0.quantity"),
        ({"items": [{"item_id": ITEM, "quantity": 0}]}, "items.0.quantity"),
        ({"items": [{"item_id": ITEM, "quantity": -3}]}, "items.0.quantity"),
        ({"items": [{"item_id": ITEM, "quantity": 1001}]}, "items.0.quantity"),
        ({"items": [{"item_id": ITEM, "quantity": 1.5}]}, "items.0.quantity"),
        ({"items": [{"item_id": ITEM, "quantity": "2"}]}, "items.0.quantity"),
        ({"items": [{"item_id": ITEM, "quantity": True}]}, "items.0.quantity"),
        ({"items": [{"item_id": ITEM, "quantity": 1, "price": 1}]}, "items.0.price"),
        (
            {"items": [{"item_id": ITEM, "quantity": 1}, {"item_id": ITEM, "quantity": 2}]},
            "items",
        ),
        ({"payment_method_id": None}, "payment_method_id"),
        ({"payment_method_id": "pm_123"}, "payment_method_id"),
        ({"total": 1}, "total"),
    ],
)
async def test_every_field_of_a_new_order_is_validated(
    shop_front: Market, overrides: dict[str, Any], field: str
) -> None:
    _, headers, method = shop_front.buyer()
    item = await shop_front.new_item()
    body = _body(item, method, **overrides)
    for line in body["items"] if isinstance(body["items"], list) else []:
        if line.get("item_id") == ITEM:
            line["item_id"] = item
    response = await shop_front.orders.post(ORDERS, json=body, headers=headers)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert problem["code"] == "validation_failed"
    assert any(error["field"] == field for error in problem["errors"]), problem["errors"]


async def test_the_largest_order_allowed_is_accepted(shop_front: Market) -> None:
    _, headers, method = shop_front.buyer()
    items = [await shop_front.new_item(price=1) for _ in range(100)]
    order = await shop_front.place(headers, method, *((item, 1000) for item in items))
    assert len(order["items"]) == 100 and order["total"] == 100_000


async def test_unknown_and_withdrawn_items_are_refused_by_line(shop_front: Market) -> None:
    _, headers, method = shop_front.buyer()
    good = await shop_front.new_item()
    withdrawn = await shop_front.new_item(active=False)
    body = {
        "items": [
            {"item_id": good, "quantity": 1},
            {"item_id": withdrawn, "quantity": 1},
            {"item_id": str(uuid.uuid4()), "quantity": 1},
        ],
        "payment_method_id": method,
    }
    response = await shop_front.orders.post(ORDERS, json=body, headers=headers)
    assert response.status_code == 422
    problem = response.json()
    assert problem["code"] == "item_unavailable"
    assert [error["field"] for error in problem["errors"]] == ["items.1.item_id", "items.2.item_id"]


async def test_one_order_has_one_currency(shop_front: Market) -> None:
    _, headers, method = shop_front.buyer()
    euros, dollars = await shop_front.new_item(), await shop_front.new_item(currency="USD")
    body = {
        "items": [{"item_id": euros, "quantity": 1}, {"item_id": dollars, "quantity": 1}],
        "payment_method_id": method,
    }
    response = await shop_front.orders.post(ORDERS, json=body, headers=headers)
    assert response.status_code == 422
    assert response.json()["code"] == "mixed_currencies"


async def test_the_payment_method_must_be_the_callers(shop_front: Market) -> None:
    _, headers, _ = shop_front.buyer()
    _, _, someone_elses = shop_front.buyer()
    item = await shop_front.new_item()
    for method in (someone_elses, str(uuid.uuid4())):
        response = await shop_front.orders.post(ORDERS, json=_body(item, method), headers=headers)
        assert response.status_code == 422
        problem = response.json()
        assert problem["code"] == "payment_method_invalid"
        assert problem["errors"][0]["field"] == "payment_method_id"
    listing = await shop_front.orders.get(ORDERS, headers=headers)
    assert listing.json()["items"] == []


async def test_only_customers_order_and_tokens_are_required(shop_front: Market) -> None:
    _, _, method = shop_front.buyer()
    item = await shop_front.new_item()
    anonymous = await shop_front.orders.post(ORDERS, json=_body(item, method))
    assert anonymous.status_code == 401
    as_service = await shop_front.orders.post(
        ORDERS, json=_body(item, method), headers=shop_front.headers(CLIENT_ID, "service")
    )
    assert as_service.status_code == 403


async def test_a_gateway_that_cannot_be_reached_is_a_503(open_market: OpenMarket) -> None:
    market = await open_market(real_catalog=False)
    _, headers, method = market.buyer()
    item = await market.new_item()
    await market.gateway.stop()
    response = await market.orders.post(ORDERS, json=_body(item, method), headers=headers)
    assert response.status_code == 503
    assert response.json()["code"] == "catalog_unavailable"


async def test_the_same_idempotency_key_places_one_order(shop_front: Market) -> None:
    _, headers, method = shop_front.buyer()
    item = await shop_front.new_item()
    body = _body(item, method)
    key = {"Idempotency-Key": f"checkout-{uuid.uuid4()}"}

    responses = await asyncio.gather(
        *(shop_front.orders.post(ORDERS, json=body, headers={**headers, **key}) for _ in range(6))
    )
    assert [r.status_code for r in responses] == [201] * 6
    assert len({r.json()["id"] for r in responses}) == 1
    assert len({r.content for r in responses}) == 1
    listing = (await shop_front.orders.get(ORDERS, headers=headers)).json()
    assert len(listing["items"]) == 1

    reused = await shop_front.orders.post(
        ORDERS,
        json=_body(item, method, items=[{"item_id": item, "quantity": 2}]),
        headers={**headers, **key},
    )
    assert reused.status_code == 422
    assert reused.json()["code"] == "idempotency_key_reused"
    order_id = responses[0].json()["id"]
    await shop_front.sent(catalog_contract.ReserveStock, order_id)
    await shop_front.sent(orders_contract.OrderCreated, order_id)
    assert shop_front.count(orders_contract.OrderCreated, order_id) == 1
    assert shop_front.count(catalog_contract.ReserveStock, order_id) == 1


async def test_others_orders_do_not_exist_for_a_customer(shop_front: Market) -> None:
    owner, headers, method = shop_front.buyer()
    item = await shop_front.new_item()
    order = await shop_front.place(headers, method, (item, 1))
    stranger = shop_front.headers()

    for response in (
        await shop_front.orders.get(f"{ORDERS}/{order['id']}", headers=stranger),
        await shop_front.orders.post(f"{ORDERS}/{order['id']}/cancel", headers=stranger),
        await shop_front.orders.get(f"{ORDERS}/{uuid.uuid4()}", headers=headers),
    ):
        assert response.status_code == 404
        assert response.json()["code"] == "order_not_found"
        assert owner not in response.text
    for role in ("support", "admin", "service"):
        seen = await shop_front.orders.get(
            f"{ORDERS}/{order['id']}", headers=shop_front.headers(None, role)
        )
        assert seen.status_code == 200 and seen.json()["id"] == order["id"]
    assert (await shop_front.orders.get(f"{ORDERS}/not-a-uuid", headers=headers)).status_code == 422


async def test_lists_customers_own_orders_and_anyones_for_support(shop_front: Market) -> None:
    alice, alice_headers, alice_method = shop_front.buyer()
    bob, bob_headers, bob_method = shop_front.buyer()
    item = await shop_front.new_item()
    alices = [
        (await shop_front.place(alice_headers, alice_method, (item, 1)))["id"] for _ in range(3)
    ]
    bobs = (await shop_front.place(bob_headers, bob_method, (item, 1)))["id"]

    first = (await shop_front.orders.get(ORDERS, params={"limit": 2}, headers=alice_headers)).json()
    rest = (
        await shop_front.orders.get(
            ORDERS, params={"limit": 2, "cursor": first["next_cursor"]}, headers=alice_headers
        )
    ).json()
    assert [o["id"] for o in first["items"] + rest["items"]] == list(reversed(alices))
    assert rest["next_cursor"] is None

    peeking = await shop_front.orders.get(ORDERS, params={"user_id": bob}, headers=alice_headers)
    assert peeking.status_code == 403
    own = await shop_front.orders.get(ORDERS, params={"user_id": alice}, headers=alice_headers)
    assert len(own.json()["items"]) == 3

    support = shop_front.headers(None, "support")
    of_bob = (await shop_front.orders.get(ORDERS, params={"user_id": bob}, headers=support)).json()
    assert [o["id"] for o in of_bob["items"]] == [bobs]
    pending = await shop_front.orders.get(ORDERS, params={"status": "pending"}, headers=support)
    assert len(pending.json()["items"]) == 4
    bad = await shop_front.orders.get(ORDERS, params={"status": "lost"}, headers=support)
    assert bad.status_code == 422
    sellers_only = await shop_front.orders.get(ORDERS, headers=shop_front.headers(None, "seller"))
    assert sellers_only.status_code == 403


async def test_sellers_see_the_lines_of_their_items_only(shop_front: Market) -> None:
    _, headers, method = shop_front.buyer()
    mine_seller, other_seller = str(uuid.uuid4()), str(uuid.uuid4())
    mine = await shop_front.new_item(seller_id=mine_seller, price=700, title="Mine")
    theirs = await shop_front.new_item(seller_id=other_seller, title="Theirs")
    first = await shop_front.place(headers, method, (mine, 2), (theirs, 1))
    second = await shop_front.place(headers, method, (mine, 1))

    seller_headers = shop_front.headers(mine_seller, "customer", "seller")
    sales = (await shop_front.orders.get(f"{ORDERS}/sales", headers=seller_headers)).json()
    assert [(s["order_id"], s["item_id"], s["quantity"]) for s in sales["items"]] == [
        (second["id"], mine, 1),
        (first["id"], mine, 2),
    ]
    line = sales["items"][1]
    assert line["order_status"] == "pending"
    assert line["title"] == "Mine" and line["unit_price"] == 700 and line["line_total"] == 1400
    assert line["currency"] == "EUR"
    assert "payment_method_id" not in line and "payment_id" not in line and "user_id" not in line

    page = (
        await shop_front.orders.get(f"{ORDERS}/sales", params={"limit": 1}, headers=seller_headers)
    ).json()
    assert len(page["items"]) == 1 and page["next_cursor"]
    customers = await shop_front.orders.get(f"{ORDERS}/sales", headers=headers)
    assert customers.status_code == 403


async def test_a_cancelled_order_cannot_be_cancelled_again(shop_front: Market) -> None:
    _, headers, method = shop_front.buyer()
    item = await shop_front.new_item()
    order = await shop_front.place(headers, method, (item, 1))
    await shop_front.sent(catalog_contract.ReserveStock, order["id"])
    await shop_front.answer(
        catalog_contract.StockReservationRefused(
            reservation_id=uuid.UUID(order["id"]), reason="out_of_stock"
        ),
        order["id"],
        key=order["id"],
    )
    await shop_front.settled(order["id"], "cancelled")
    again = await shop_front.orders.post(f"{ORDERS}/{order['id']}/cancel", headers=headers)
    assert again.status_code == 409
    assert again.json()["code"] == "order_not_cancellable"
