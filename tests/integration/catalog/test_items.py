"""Sellers list items, anyone browses and searches them, every change is announced."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from bazaar.contracts import catalog as contract
from bazaar.kit.config import PlatformSettings
from bazaar.kit.testing import TokenIssuer, read_topic

ITEMS = "/api/catalog/items"


def an_item(**overrides: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "kind": "good",
        "title": "Hand-thrown tea bowl",
        "description": "Stoneware, ash glaze, about 300 ml.",
        "price": 4500,
        "currency": "EUR",
        "stock": 3,
    }
    item.update(overrides)
    return item


async def test_seller_lists_an_item_and_anyone_reads_it(
    catalog: httpx.AsyncClient, token_issuer: TokenIssuer
) -> None:
    seller = str(uuid.uuid4())
    created = await catalog.post(
        ITEMS, json=an_item(), headers=token_issuer.headers(seller, ["customer", "seller"])
    )
    assert created.status_code == 201, created.text
    item = created.json()
    assert item["seller_id"] == seller
    assert item["price"] == 4500 and item["currency"] == "EUR" and item["stock"] == 3
    assert item["active"] is True

    fetched = await catalog.get(f"{ITEMS}/{item['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == item


async def test_services_have_unlimited_stock_by_default(
    catalog: httpx.AsyncClient, token_issuer: TokenIssuer
) -> None:
    response = await catalog.post(
        ITEMS,
        json={"kind": "service", "title": "Bike repair", "price": 2000, "currency": "USD"},
        headers=token_issuer.headers(roles=["seller"]),
    )
    assert response.status_code == 201
    assert response.json()["stock"] is None


@pytest.mark.parametrize("roles", [["customer"], ["support"]])
async def test_only_sellers_and_admins_list_items(
    catalog: httpx.AsyncClient, token_issuer: TokenIssuer, roles: list[str]
) -> None:
    response = await catalog.post(ITEMS, json=an_item(), headers=token_issuer.headers(roles=roles))
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "forbidden"


async def test_anonymous_and_forged_callers_cannot_list_items(
    catalog: httpx.AsyncClient, token_issuer: TokenIssuer
) -> None:
    assert (await catalog.post(ITEMS, json=an_item())).status_code == 401
    forged = token_issuer.mint(roles=["seller"])[:-4] + "AAAA"
    response = await catalog.post(
        ITEMS, json=an_item(), headers={"Authorization": f"Bearer {forged}"}
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("kind", "gadget"),
        ("title", ""),
        ("title", "x" * 201),
        ("price", 0),
        ("price", -5),
        ("price", 12.5),
        ("price", "100"),
        ("currency", "eur"),
        ("currency", "EURO"),
        ("stock", -1),
        ("description", "d" * 10_001),
        ("unexpected", "field"),
    ],
)
async def test_invalid_items_are_refused_field_by_field(
    catalog: httpx.AsyncClient, token_issuer: TokenIssuer, field: str, value: Any
) -> None:
    headers = token_issuer.headers(roles=["seller"])
    response = await catalog.post(ITEMS, json=an_item(**{field: value}), headers=headers)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "validation_failed"
    assert any(error["field"] == field for error in problem["errors"]), problem
    listing = await catalog.get(ITEMS)
    assert listing.json()["items"] == []


async def test_malformed_json_is_a_422_not_a_500(
    catalog: httpx.AsyncClient, token_issuer: TokenIssuer
) -> None:
    headers = {**token_issuer.headers(roles=["seller"]), "content-type": "application/json"}
    response = await catalog.post(ITEMS, content=b'{"kind": "good",', headers=headers)
    assert response.status_code == 422
    assert response.json()["code"] == "validation_failed"


async def test_unknown_and_malformed_ids_are_clear_errors(catalog: httpx.AsyncClient) -> None:
    missing = await catalog.get(f"{ITEMS}/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert missing.json()["code"] == "item_not_found"
    assert (await catalog.get(f"{ITEMS}/not-a-uuid")).status_code == 422


async def test_sellers_change_only_their_own_items(
    catalog: httpx.AsyncClient, token_issuer: TokenIssuer
) -> None:
    owner = str(uuid.uuid4())
    owner_headers = token_issuer.headers(owner, ["seller"])
    item = (await catalog.post(ITEMS, json=an_item(), headers=owner_headers)).json()

    other = await catalog.patch(
        f"{ITEMS}/{item['id']}", json={"price": 1}, headers=token_issuer.headers(roles=["seller"])
    )
    assert other.status_code == 403
    assert other.json()["code"] == "not_item_seller"

    changed = await catalog.patch(
        f"{ITEMS}/{item['id']}", json={"price": 3900, "stock": 10}, headers=owner_headers
    )
    assert changed.status_code == 200
    assert changed.json()["price"] == 3900 and changed.json()["stock"] == 10
    assert changed.json()["updated_at"] > item["updated_at"]

    by_admin = await catalog.patch(
        f"{ITEMS}/{item['id']}",
        json={"title": "Tea bowl"},
        headers=token_issuer.headers(roles=["admin"]),
    )
    assert by_admin.status_code == 200 and by_admin.json()["title"] == "Tea bowl"

    nulled = await catalog.patch(
        f"{ITEMS}/{item['id']}", json={"price": None}, headers=owner_headers
    )
    assert nulled.status_code == 422


async def test_withdrawn_items_leave_the_listing_but_stay_readable(
    catalog: httpx.AsyncClient, token_issuer: TokenIssuer
) -> None:
    headers = token_issuer.headers(roles=["seller"])
    item = (await catalog.post(ITEMS, json=an_item(), headers=headers)).json()
    withdrawn = await catalog.patch(
        f"{ITEMS}/{item['id']}", json={"active": False}, headers=headers
    )
    assert withdrawn.json()["active"] is False
    assert (await catalog.get(ITEMS)).json()["items"] == []
    assert (await catalog.get(f"{ITEMS}/{item['id']}")).json()["active"] is False


async def test_pages_walk_every_item_once_newest_first(
    catalog: httpx.AsyncClient, token_issuer: TokenIssuer
) -> None:
    headers = token_issuer.headers(roles=["seller"])
    made = [
        (await catalog.post(ITEMS, json=an_item(title=f"Item {n}"), headers=headers)).json()["id"]
        for n in range(7)
    ]
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = (await catalog.get(ITEMS, params=params)).json()
        seen.extend(item["id"] for item in page["items"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(reversed(made))


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 101},
        {"limit": "many"},
        {"cursor": "not-a-cursor"},
        {"cursor": "WzFd"},
        {"kind": "gadget"},
    ],
)
async def test_bad_list_parameters_are_422(
    catalog: httpx.AsyncClient, params: dict[str, Any]
) -> None:
    response = await catalog.get(ITEMS, params=params)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"


async def test_search_finds_by_title_and_description_best_first(
    catalog: httpx.AsyncClient, token_issuer: TokenIssuer
) -> None:
    headers = token_issuer.headers(roles=["seller"])
    in_title = await catalog.post(
        ITEMS,
        json=an_item(title="Walnut chopping board", description="Oiled hardwood"),
        headers=headers,
    )
    in_description = await catalog.post(
        ITEMS,
        json=an_item(title="Kitchen set", description="Includes a small walnut board"),
        headers=headers,
    )
    await catalog.post(
        ITEMS, json=an_item(title="Linen apron", description="Blue"), headers=headers
    )

    found = (await catalog.get(ITEMS, params={"q": "walnut boards"})).json()["items"]
    assert [item["id"] for item in found] == [in_title.json()["id"], in_description.json()["id"]]
    assert (await catalog.get(ITEMS, params={"q": "teapot"})).json()["items"] == []
    # Web-search syntax from users never breaks the query.
    odd = await catalog.get(ITEMS, params={"q": '"walnut & | !( board'})
    assert odd.status_code == 200


async def test_search_pages_by_relevance(
    catalog: httpx.AsyncClient, token_issuer: TokenIssuer
) -> None:
    headers = token_issuer.headers(roles=["seller"])
    for n in range(5):
        await catalog.post(
            ITEMS, json=an_item(title=f"Lamp {n}", description="lamp " * n), headers=headers
        )
    first = (await catalog.get(ITEMS, params={"q": "lamp", "limit": 2})).json()
    rest = (
        await catalog.get(ITEMS, params={"q": "lamp", "limit": 10, "cursor": first["next_cursor"]})
    ).json()
    titles = [item["title"] for item in first["items"] + rest["items"]]
    assert sorted(titles) == [f"Lamp {n}" for n in range(5)]
    assert len(set(titles)) == 5
    assert titles[0] == "Lamp 4"


async def test_filters_by_kind_and_seller(
    catalog: httpx.AsyncClient, token_issuer: TokenIssuer
) -> None:
    alice, bob = str(uuid.uuid4()), str(uuid.uuid4())
    await catalog.post(ITEMS, json=an_item(), headers=token_issuer.headers(alice, ["seller"]))
    await catalog.post(
        ITEMS,
        json=an_item(kind="service", stock=None, title="Tuning"),
        headers=token_issuer.headers(bob, ["seller"]),
    )
    services = (await catalog.get(ITEMS, params={"kind": "service"})).json()["items"]
    assert [item["title"] for item in services] == ["Tuning"]
    alices = (await catalog.get(ITEMS, params={"seller_id": alice})).json()["items"]
    assert [item["seller_id"] for item in alices] == [alice]


async def test_every_change_is_announced_through_the_outbox(
    catalog: httpx.AsyncClient, token_issuer: TokenIssuer, platform_settings: PlatformSettings
) -> None:
    seller = str(uuid.uuid4())
    headers = token_issuer.headers(seller, ["seller"])
    item = (await catalog.post(ITEMS, json=an_item(), headers=headers)).json()
    await catalog.patch(f"{ITEMS}/{item['id']}", json={"price": 100}, headers=headers)
    await catalog.patch(f"{ITEMS}/{item['id']}", json={"active": False}, headers=headers)

    events = await read_topic(platform_settings, contract.TOPIC, until=lambda seen: len(seen) >= 3)
    assert [event.type for event in events] == [
        contract.ItemCreated.TYPE,
        contract.ItemUpdated.TYPE,
        contract.ItemWithdrawn.TYPE,
    ]
    assert {event.subject for event in events} == {item["id"]}
    assert all(event.userid == seller for event in events)
    assert events[1].data["price"] == 100
    assert events[2].data["active"] is False
