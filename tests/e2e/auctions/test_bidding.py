"""Bidding end to end: through the gateway onto two auctions replicas, many bidders at once."""

from __future__ import annotations

import asyncio
import itertools
import random
from datetime import timedelta
from typing import Any

import httpx

from bazaar.stack.supervisor import Stack
from tests.e2e.auctions.market import (
    all_bids,
    auction_reaching,
    bids_decided_by_replica,
    create_auction,
    event_stream,
    get_auction,
    parse_time,
    place_bid,
)
from tests.e2e.conftest import E2EUser, MakeUser
from tests.e2e.shopping import add_card

BIDDERS = 24
BIDS_EACH = 12


async def bidders_with_cards(
    gateway: httpx.AsyncClient, make_user: MakeUser, count: int
) -> list[tuple[E2EUser, str]]:
    users = await asyncio.gather(*(make_user() for _ in range(count)))
    methods = await asyncio.gather(*(add_card(gateway, user) for user in users))
    return list(zip(users, methods, strict=True))


async def test_hundreds_of_concurrent_bids_through_two_replicas_stay_strictly_increasing(
    stack: Stack, gateway: httpx.AsyncClient, seller: E2EUser, make_user: MakeUser
) -> None:
    assert len(stack.replicas("auctions")) == 2
    bidders = await bidders_with_cards(gateway, make_user, BIDDERS)
    auction = await create_auction(gateway, seller, starting_price=1000, min_increment=10)
    decided_before = await bids_decided_by_replica(stack)
    accepted: list[dict[str, Any]] = []
    refusals: list[str] = []

    async def bid_repeatedly(bidder: E2EUser, method: str, seed: int) -> None:
        rng = random.Random(seed)
        minimum = 1000
        for _ in range(BIDS_EACH):
            # Everyone bids about the least amount they know of: most bids collide.
            amount = minimum + 10 * rng.randint(0, 4)
            response = await place_bid(gateway, bidder, auction["id"], amount, method)
            body = response.json()
            if response.status_code == 201:
                accepted.append(body)
                minimum = body["current_price"] + 10
            else:
                assert response.status_code == 409, response.text
                assert body["code"] == "bid_too_low", body
                refusals.append(body["code"])
                minimum = max(minimum, body["minimum_amount"])

    await asyncio.gather(
        *(bid_repeatedly(user, method, n) for n, (user, method) in enumerate(bidders))
    )
    assert len(accepted) + len(refusals) == BIDDERS * BIDS_EACH
    assert len(accepted) >= 10, "a fair share of bids is accepted, not just refused"

    bids = await all_bids(gateway, auction["id"])
    amounts = [bid["amount"] for bid in bids]
    assert all(a < b for a, b in itertools.pairwise(amounts)), "accepted amounts must rise"
    assert {bid["id"] for bid in accepted} <= {bid["id"] for bid in bids}
    assert len(bids) == len(accepted)  # no proxy bidding here: no automatic bids
    final = await get_auction(gateway, auction["id"])
    assert final["current_price"] == amounts[-1] == max(b["amount"] for b in accepted)
    assert final["bid_count"] == len(bids)
    # Both replicas decided bids: the gateway spread them.
    decided_after = await bids_decided_by_replica(stack)
    assert all(
        after > before for before, after in zip(decided_before, decided_after, strict=True)
    ), (decided_before, decided_after)


async def test_buy_now_racing_a_bid_at_its_price_lets_exactly_one_through(
    gateway: httpx.AsyncClient, seller: E2EUser, make_user: MakeUser
) -> None:
    (bidder, bid_card), (buyer, buy_card) = await bidders_with_cards(gateway, make_user, 2)
    auctions = await asyncio.gather(
        *(create_auction(gateway, seller, buy_now_price=5000) for _ in range(6))
    )

    async def race(auction: dict[str, Any]) -> tuple[httpx.Response, httpx.Response]:
        bid, bought = await asyncio.gather(
            place_bid(gateway, bidder, auction["id"], 5000, bid_card),
            gateway.post(
                f"/api/auctions/{auction['id']}/buy-now",
                json={"payment_method_id": buy_card},
                headers=buyer.headers,
            ),
        )
        return bid, bought

    for auction, (bid, bought) in zip(
        auctions, await asyncio.gather(*(race(a) for a in auctions)), strict=True
    ):
        assert sorted([bid.status_code, bought.status_code]) in ([201, 409], [202, 409])
        if bought.status_code == 202:
            assert bid.json()["code"] == "auction_not_open"
            settled = await auction_reaching(gateway, auction["id"], "settled")
            assert settled["winner_id"] == buyer.id and settled["final_price"] == 5000
        else:
            assert bought.json()["code"] == "buy_now_unavailable"
            still_open = await get_auction(gateway, auction["id"])
            assert still_open["status"] == "open" and still_open["current_price"] == 5000


async def test_a_bid_after_the_close_is_refused(
    gateway: httpx.AsyncClient, seller: E2EUser, make_user: MakeUser
) -> None:
    ((bidder, card),) = await bidders_with_cards(gateway, make_user, 1)
    auction = await create_auction(gateway, seller, ends_in=2)
    assert (await place_bid(gateway, bidder, auction["id"], 1000, card)).status_code == 201
    await auction_reaching(gateway, auction["id"], "closing", "settled", timeout=10)
    late = await place_bid(gateway, bidder, auction["id"], 5000, card)
    assert late.status_code == 409
    assert late.json()["code"] == "auction_not_open"
    assert [bid["amount"] for bid in await all_bids(gateway, auction["id"])] == [1000]


async def test_soft_close_moves_the_end_and_stops_at_max_extensions(
    stack: Stack, gateway: httpx.AsyncClient, seller: E2EUser, make_user: MakeUser
) -> None:
    (first, first_card), (second, second_card) = await bidders_with_cards(gateway, make_user, 2)
    auction = await create_auction(
        gateway, seller, ends_in=3, soft_close_seconds=5, max_extensions=1
    )
    ends_at = parse_time(auction["ends_at"])
    async with event_stream(stack.gateway_url, auction["id"]) as stream:
        bid = await place_bid(gateway, first, auction["id"], 1000, first_card)
        assert bid.status_code == 201
        extended = await get_auction(gateway, auction["id"])
        new_end = parse_time(extended["ends_at"])
        assert new_end > ends_at
        assert new_end == parse_time(bid.json()["created_at"]) + timedelta(seconds=5)
        assert extended["extensions"] == 1
        (event,) = await stream.wait_for_events(1, "extended")
        assert event.data["ends_at"] == extended["ends_at"]
        # The one extension allowed was used: a later bid leaves the end where it is.
        assert (
            await place_bid(gateway, second, auction["id"], 1100, second_card)
        ).status_code == 201
        assert (await get_auction(gateway, auction["id"]))["ends_at"] == extended["ends_at"]
        closed = await auction_reaching(gateway, auction["id"], "closing", "settled", timeout=15)
        assert closed["extensions"] == 1
        (close,) = await stream.wait_for_events(1, "closed", timeout=15)
        assert close.received_at >= new_end
        assert (close.received_at - new_end).total_seconds() < 2.5
