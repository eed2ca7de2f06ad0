"""Sellers put things up for auction; anyone lists and reads them; secrets stay secret;
cancelling follows who may cancel what."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bazaar.contracts import auctions as contract
from bazaar.kit.testing import read_topic
from tests.integration.auctions.conftest import AUCTIONS, Auctions, an_auction, iso, parse_time


async def test_a_seller_creates_an_auction_and_anyone_reads_it(market: Auctions) -> None:
    seller = market.seller()
    created = await market.create(seller, reserve_price=5000, buy_now_price=9000)
    assert created["seller_id"] == str(seller.id)
    assert created["status"] == "open"
    assert created["reserve_price"] == 5000  # its seller sees the reserve
    assert created["current_price"] is None and created["bid_count"] == 0
    assert created["reserve_met"] is False
    assert created["winner_id"] is None and created["payment_id"] is None
    assert created["ends_at"].endswith("Z")

    anonymous = await market.get(created["id"])
    assert "reserve_price" not in anonymous
    assert anonymous["buy_now_price"] == 9000
    assert await market.get(created["id"], market.user())
    assert "reserve_price" not in await market.get(created["id"], market.user())
    assert (await market.get(created["id"], market.support()))["reserve_price"] == 5000
    assert (await market.get(created["id"], seller))["reserve_price"] == 5000

    events = await read_topic(
        market.platform,
        contract.TOPIC,
        until=lambda seen: any(e.type == contract.AuctionCreated.TYPE for e in seen),
    )
    created_event = next(e for e in events if e.type == contract.AuctionCreated.TYPE)
    assert created_event.data["auction_id"] == created["id"]
    assert "reserve_price" not in created_event.data


async def test_an_auction_starting_later_is_scheduled_then_opens_by_itself(
    market: Auctions,
) -> None:
    starts_at = datetime.now(UTC) + timedelta(seconds=1)
    created = await market.create(market.seller(), starts_at=iso(starts_at))
    assert created["status"] == "scheduled"
    early = await market.bid(created["id"], market.user(), 1000)
    assert early.status_code == 409 and early.json()["code"] == "auction_not_open"
    opened = await market.wait_status(created["id"], "open", timeout=5)
    assert parse_time(opened["starts_at"]) == starts_at.replace(microsecond=starts_at.microsecond)
    assert datetime.now(UTC) - starts_at < timedelta(seconds=2)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"starting_price": 0}, "starting_price"),
        ({"starting_price": 10.5}, "starting_price"),
        ({"starting_price": "1000"}, "starting_price"),
        ({"min_increment": -1}, "min_increment"),
        ({"reserve_price": 0}, "reserve_price"),
        ({"buy_now_price": 999}, "buy_now_price"),
        ({"reserve_price": 5000, "buy_now_price": 4000}, "buy_now_price"),
        ({"currency": "eur"}, "currency"),
        ({"title": ""}, "title"),
        ({"ends_in": -10}, "ends_at"),
        ({"ends_in": 31 * 86400}, "ends_at"),
        ({"ends_at": "2030-01-01T10:00:00"}, "ends_at"),  # no time zone
        ({"starts_at": "2020-01-01T10:00:00Z"}, "starts_at"),
        ({"soft_close_seconds": -1}, "soft_close_seconds"),
        ({"max_extensions": -1}, "max_extensions"),
        ({"surprise": True}, "surprise"),
    ],
)
async def test_invalid_auctions_are_refused_field_by_field(
    market: Auctions, overrides: dict[str, Any], field: str
) -> None:
    response = await market.clients[0].post(
        AUCTIONS, json=an_auction(**overrides), headers=market.seller().headers
    )
    assert response.status_code == 422, response.text
    problem = response.json()
    assert any(error["field"] == field for error in problem["errors"]), problem


async def test_thirty_days_is_the_longest_auction(market: Auctions) -> None:
    starts_at = datetime.now(UTC) + timedelta(days=2)
    ok = an_auction(starts_at=iso(starts_at), ends_at=iso(starts_at + timedelta(days=30)))
    too_long = an_auction(
        starts_at=iso(starts_at), ends_at=iso(starts_at + timedelta(days=30, seconds=1))
    )
    headers = market.seller().headers
    assert (await market.clients[0].post(AUCTIONS, json=ok, headers=headers)).status_code == 201
    refused = await market.clients[0].post(AUCTIONS, json=too_long, headers=headers)
    assert refused.status_code == 422


async def test_only_sellers_create_auctions(market: Auctions) -> None:
    response = await market.clients[0].post(
        AUCTIONS, json=an_auction(), headers=market.user().headers
    )
    assert response.status_code == 403
    assert (await market.clients[0].post(AUCTIONS, json=an_auction())).status_code == 401


async def test_lists_page_through_auctions_by_status(market: Auctions) -> None:
    seller = market.seller()
    ids = [(await market.create(seller, title=f"Lot {n}"))["id"] for n in range(5)]
    cancelled = ids[0]
    assert (
        await market.clients[0].post(f"{AUCTIONS}/{cancelled}/cancel", headers=seller.headers)
    ).status_code == 202

    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2", "status": "open", **({"cursor": cursor} if cursor else {})}
        page = (await market.clients[1].get(AUCTIONS, params=params)).json()
        seen.extend(item["id"] for item in page["items"])
        assert all(item["status"] == "open" for item in page["items"])
        assert all("reserve_price" not in item for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids[1:]))
    cancelled_page = (await market.clients[0].get(AUCTIONS, params={"status": "cancelled"})).json()
    assert [item["id"] for item in cancelled_page["items"]] == [cancelled]
    bad = await market.clients[0].get(AUCTIONS, params={"cursor": "not-a-cursor"})
    assert bad.status_code == 422


async def test_a_seller_cancels_only_while_nobody_has_bid(market: Auctions) -> None:
    seller = market.seller()
    auction = await market.create(seller)
    assert (await market.bid(auction["id"], market.user(), 1000)).status_code == 201
    refused = await market.clients[0].post(
        f"{AUCTIONS}/{auction['id']}/cancel", headers=seller.headers
    )
    assert refused.status_code == 409 and refused.json()["code"] == "auction_has_bids"
    stranger = market.seller()
    forbidden = await market.clients[0].post(
        f"{AUCTIONS}/{auction['id']}/cancel", headers=stranger.headers
    )
    assert forbidden.status_code == 403

    cancelled = await market.clients[1].post(
        f"{AUCTIONS}/{auction['id']}/cancel",
        json={"reason": "counterfeit"},
        headers=market.support().headers,
    )
    assert cancelled.status_code == 202, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["status_reason"] == "counterfeit"
    late = await market.bid(auction["id"], market.user(), 5000)
    assert late.status_code == 409 and late.json()["code"] == "auction_not_open"


async def test_unknown_auctions_are_404(market: Auctions) -> None:
    missing = uuid.uuid4()
    for path in ("", "/bids", "/stream"):
        response = await market.clients[0].get(f"{AUCTIONS}/{missing}{path}")
        assert response.status_code == 404, path
    bid = await market.bid(str(missing), market.user(), 1000)
    assert bid.status_code == 404


async def test_a_bidder_lists_the_auctions_they_bid_on_with_where_they_stand(
    market: Auctions,
) -> None:
    seller, me, rival = market.seller(), market.user(), market.user()
    leading = await market.create(seller, title="Leading")
    outbid = await market.create(seller, title="Outbid")
    await market.create(seller, title="Never bid on")
    assert (await market.bid(leading["id"], rival, 1000)).status_code == 201
    assert (await market.bid(leading["id"], me, 1200)).status_code == 201
    assert (await market.bid(outbid["id"], me, 1000, replica=1)).status_code == 201
    assert (await market.bid(outbid["id"], me, 1500, replica=1)).status_code == 201
    assert (await market.bid(outbid["id"], rival, 2000)).status_code == 201

    response = await market.reader.get(
        AUCTIONS, params={"bidder_id": str(me.id)}, headers=me.headers
    )
    assert response.status_code == 200, response.text
    page = response.json()
    assert [a["title"] for a in page["items"]] == ["Outbid", "Leading"]
    standings = {a["title"]: a["bidder_standing"] for a in page["items"]}
    assert standings["Outbid"]["best_amount"] == 1500
    assert standings["Outbid"]["bids"] == 2
    assert standings["Outbid"]["leading"] is False
    assert standings["Leading"] == {
        **standings["Leading"],
        "bidder_id": str(me.id),
        "best_amount": 1200,
        "bids": 1,
        "leading": True,
    }
    # Plain lists carry no standing.
    plain = await market.reader.get(AUCTIONS, headers=me.headers)
    assert all("bidder_standing" not in a for a in plain.json()["items"])

    # Cursor pages, as the plain list; combined with the status filter.
    first = await market.reader.get(
        AUCTIONS, params={"bidder_id": str(me.id), "limit": "1"}, headers=me.headers
    )
    assert [a["title"] for a in first.json()["items"]] == ["Outbid"]
    rest = await market.reader.get(
        AUCTIONS,
        params={"bidder_id": str(me.id), "limit": "1", "cursor": first.json()["next_cursor"]},
        headers=me.headers,
    )
    assert [a["title"] for a in rest.json()["items"]] == ["Leading"]
    assert rest.json()["next_cursor"] is None
    closed = await market.reader.get(
        AUCTIONS, params={"bidder_id": str(me.id), "status": "settled"}, headers=me.headers
    )
    assert closed.json()["items"] == []


async def test_only_the_bidder_support_and_admins_list_a_bidders_auctions(
    market: Auctions,
) -> None:
    me = market.user()
    auction = await market.create(market.seller())
    assert (await market.bid(auction["id"], me, 1000)).status_code == 201
    params = {"bidder_id": str(me.id)}
    for viewer in (market.support(), market.user("customer", "admin")):
        seen = await market.reader.get(AUCTIONS, params=params, headers=viewer.headers)
        assert seen.status_code == 200
        assert [a["id"] for a in seen.json()["items"]] == [auction["id"]]
    stranger = await market.reader.get(AUCTIONS, params=params, headers=market.user().headers)
    assert stranger.status_code == 403
    assert stranger.json()["code"] == "bidder_filter_forbidden"
    anonymous = await market.reader.get(AUCTIONS, params=params)
    assert anonymous.status_code == 403
