"""Bidding through two replicas at once: strictly increasing amounts, proxy bids, the
refusals API.md names, Idempotency-Key, and the payment-method check."""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

from sqlalchemy import select, text

from bazaar.auctions.models import AuctionEvent
from tests.integration.auctions.conftest import AUCTIONS, Auctions, User, strictly_increasing


async def test_hundreds_of_concurrent_bids_through_two_replicas_stay_strictly_increasing(
    market: Auctions,
) -> None:
    auction = await market.create(market.seller(), starting_price=1000, min_increment=10)
    auction_id = auction["id"]
    bidders = [market.user() for _ in range(30)]
    rng = random.Random(7)
    known_price = {"value": 1000}
    accepted: list[dict[str, Any]] = []
    refusals: list[str] = []

    async def keep_bidding(index: int, bidder: User) -> None:
        for attempt in range(10):
            amount = known_price["value"] + 10 * rng.randint(1, 40)
            # Every third bidder bids with a secret maximum: automatic bids join the race.
            max_amount = amount + 10 * rng.randint(1, 30) if index % 3 == 0 else None
            response = await market.bid(
                auction_id, bidder, amount, max_amount=max_amount, replica=(index + attempt) % 2
            )
            if response.status_code == 201:
                body = response.json()
                accepted.append(body)
                known_price["value"] = max(known_price["value"], body["current_price"])
            else:
                assert response.status_code == 409, response.text
                problem = response.json()
                refusals.append(problem["code"])
                known_price["value"] = max(known_price["value"], problem["minimum_amount"] - 10)

    await asyncio.gather(*(keep_bidding(n, bidder) for n, bidder in enumerate(bidders)))

    assert len(accepted) + len(refusals) == 300
    assert set(refusals) <= {"bid_too_low"}
    # Racing bidders mostly lose to each other; enough get through to make a history.
    assert len(accepted) >= 15
    bids = await market.bids(auction_id)
    amounts = [bid["amount"] for bid in bids]
    assert strictly_increasing(amounts)
    assert {bid["id"] for bid in accepted} <= {bid["id"] for bid in bids}
    assert len(bids) >= len(accepted)  # plus the automatic ones
    final = await market.get(auction_id)
    assert final["current_price"] == amounts[-1] == max(amounts)
    assert final["bid_count"] == len(bids)
    # Every bid was announced on the stream table, numbered without gaps.
    async with market.sessions() as session:
        sequences = list(
            await session.scalars(
                select(AuctionEvent.sequence)
                .where(AuctionEvent.auction_id == uuid.UUID(auction_id))
                .order_by(AuctionEvent.sequence)
            )
        )
    assert sequences == list(range(1, len(sequences) + 1))
    assert len(sequences) == len(bids)


async def test_two_proxy_bidders_and_a_manual_bidder_racing_end_as_the_rules_say(
    market: Auctions,
) -> None:
    auction = await market.create(market.seller(), starting_price=1000, min_increment=100)
    auction_id = auction["id"]
    ann, bob, cat = market.user(), market.user(), market.user()
    responses: dict[str, list[dict[str, Any]]] = {"ann": [], "bob": [], "cat": []}

    async def bid_up_to(
        name: str, bidder: User, maximum: int, *, proxy: bool, replica: int
    ) -> None:
        """Bid the least accepted amount (maximum as proxy) until accepted or priced out."""
        minimum = 1000
        while minimum <= maximum:
            amount = maximum if not proxy else minimum
            response = await market.bid(
                auction_id,
                bidder,
                amount,
                max_amount=maximum if proxy else None,
                replica=replica,
            )
            if response.status_code == 201:
                responses[name].append(response.json())
                return
            assert response.status_code == 409, response.text
            assert response.json()["code"] == "bid_too_low"
            minimum = response.json()["minimum_amount"]

    await asyncio.gather(
        bid_up_to("ann", ann, 5000, proxy=True, replica=0),
        bid_up_to("bob", bob, 4000, proxy=True, replica=1),
        bid_up_to("cat", cat, 3000, proxy=False, replica=0),
    )

    final = await market.get(auction_id)
    # Ann holds the highest maximum; the price is Bob's maximum plus one increment.
    assert final["current_price"] == 4100
    bids = await market.bids(auction_id)
    assert strictly_increasing([bid["amount"] for bid in bids])
    assert bids[-1]["bidder_id"] == str(ann.id) and bids[-1]["amount"] == 4100
    assert responses["ann"] and responses["ann"][0]["leading"] is True
    # Whatever the order, Bob's maximum was reached by an automatic bid of his or Ann's.
    assert any(bid["auto"] for bid in bids)
    # Maxima are secret: absent for strangers, shown to their bidder and support.
    assert all("max_amount" not in bid for bid in bids)
    own = await market.bids(auction_id, viewer=bob)
    assert {bid["max_amount"] for bid in own if bid["bidder_id"] == str(bob.id)} == {4000}
    assert all("max_amount" not in bid for bid in own if bid["bidder_id"] != str(bob.id))
    staff = await market.bids(auction_id, viewer=market.support())
    assert all("max_amount" in bid for bid in staff)


async def test_the_newcomer_learns_at_once_whether_it_leads(market: Auctions) -> None:
    auction = await market.create(market.seller(), starting_price=1000, min_increment=100)
    ann, bob = market.user(), market.user()
    first = await market.bid(auction["id"], ann, 1000, max_amount=2000)
    assert first.status_code == 201 and first.json()["leading"] is True
    outbid = await market.bid(auction["id"], bob, 1500, replica=1)
    assert outbid.status_code == 201
    assert outbid.json()["leading"] is False
    assert outbid.json()["current_price"] == 1600
    tie = await market.bid(auction["id"], bob, 1700, max_amount=2000)
    assert tie.status_code == 409 and tie.json()["code"] == "bid_too_low"
    wins = await market.bid(auction["id"], bob, 1700, max_amount=3000, replica=1)
    assert wins.json()["leading"] is True and wins.json()["current_price"] == 2100
    bids = await market.bids(auction["id"])
    assert [(b["amount"], b["auto"]) for b in bids] == [
        (1000, False),
        (1500, False),
        (1600, True),
        (1700, False),
        (2100, True),
    ]


async def test_bids_below_the_minimum_and_on_ones_own_auction_are_refused(
    market: Auctions,
) -> None:
    seller = market.seller()
    auction = await market.create(seller, starting_price=1000, min_increment=100)
    low = await market.bid(auction["id"], market.user(), 999)
    assert low.status_code == 409
    assert low.json()["code"] == "bid_too_low" and low.json()["minimum_amount"] == 1000
    assert low.headers["content-type"] == "application/problem+json"
    own = await market.bid(auction["id"], seller, 5000)
    assert own.status_code == 403 and own.json()["code"] == "own_auction"
    assert (await market.bid(auction["id"], market.user(), 1000)).status_code == 201
    again = await market.bid(auction["id"], market.user(), 1050)
    assert again.status_code == 409 and again.json()["minimum_amount"] == 1100
    below_own_max = await market.bid(auction["id"], market.user(), 1200, max_amount=1100)
    assert below_own_max.status_code == 422


async def test_a_repeated_idempotency_key_places_one_bid(market: Auctions) -> None:
    auction = await market.create(market.seller())
    bidder = market.user()
    answers = await asyncio.gather(
        *(market.bid(auction["id"], bidder, 1500, key="bid-1", replica=n % 2) for n in range(6))
    )
    assert {answer.status_code for answer in answers} == {201}
    # The same answer, byte for byte; all but the first say they are replays.
    assert len({answer.content for answer in answers}) == 1
    replayed = [answer.headers.get("idempotent-replayed") for answer in answers]
    assert replayed.count("true") == 5
    assert len(await market.bids(auction["id"])) == 1
    again = await market.bid(auction["id"], bidder, 1500, key="bid-1")
    assert again.status_code == 201 and again.content == answers[0].content
    reused = await market.bid(auction["id"], bidder, 1600, key="bid-1")
    assert reused.status_code == 422 and reused.json()["code"] == "idempotency_key_reused"
    # Another bidder's key of the same name is theirs alone.
    other = await market.bid(auction["id"], market.user(), 1600, key="bid-1")
    assert other.status_code == 201 and other.json()["id"] != answers[0].json()["id"]


async def test_a_refused_bid_leaves_its_key_unused(market: Auctions) -> None:
    auction = await market.create(market.seller())
    bidder = market.user()
    low = await market.bid(auction["id"], bidder, 500, key="k")
    assert low.status_code == 409
    assert (await market.bid(auction["id"], bidder, 1000, key="k")).status_code == 201


async def test_an_idempotency_key_expires_after_a_day(market: Auctions) -> None:
    auction = await market.create(market.seller())
    bidder = market.user()
    first = await market.bid(auction["id"], bidder, 1000, key="daily")
    assert first.status_code == 201
    async with market.sessions() as session, session.begin():
        await session.execute(
            text(
                "UPDATE idempotency_keys SET created_at = now() - interval '25 hours'"
                " WHERE principal = :principal AND key = 'daily'"
            ),
            {"principal": str(bidder.id)},
        )
    later = await market.bid(auction["id"], bidder, 1100, key="daily")
    assert later.status_code == 201 and later.json()["id"] != first.json()["id"]
    assert len(await market.bids(auction["id"])) == 2


async def test_the_payment_method_must_be_the_bidders_and_is_checked_once(
    market: Auctions,
) -> None:
    auction = await market.create(market.seller())
    bidder, other = market.user(), market.user()
    borrowed = User(bidder.id, bidder.headers, other.method_id)
    refused = await market.bid(auction["id"], borrowed, 1000)
    assert refused.status_code == 422
    assert refused.json()["code"] == "payment_method_invalid"
    unknown = User(bidder.id, bidder.headers, uuid.uuid4())
    assert (await market.bid(auction["id"], unknown, 1000)).status_code == 422

    before = market.methods.lookups
    for n in range(5):
        response = await market.bid(auction["id"], bidder, 1000 + 100 * n, replica=0)
        assert response.status_code == 201
    # One look-up through the gateway; the other bids used the remembered answer.
    assert market.methods.lookups == before + 1


async def test_only_customers_bid(market: Auctions) -> None:
    auction = await market.create(market.seller())
    anonymous = await market.clients[0].post(
        f"{AUCTIONS}/{auction['id']}/bids",
        json={"amount": 1000, "payment_method_id": str(uuid.uuid4())},
    )
    assert anonymous.status_code == 401
    service_only = market.user("service")
    forbidden = await market.bid(auction["id"], service_only, 1000)
    assert forbidden.status_code == 403
