"""Auctions close by themselves, once, within 2 s of their (possibly extended) end,
whichever replicas run; no bid gets in after; soft close; buy-now against a bid."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta

from sqlalchemy import func, select

from bazaar.auctions.models import AuctionEvent
from tests.integration.auctions.conftest import AUCTIONS, Auctions, parse_time

CLOSE_WITHIN = timedelta(seconds=2)


async def stream_events(market: Auctions, auction_id: str, type_: str) -> list[AuctionEvent]:
    async with market.sessions() as session:
        return list(
            await session.scalars(
                select(AuctionEvent)
                .where(AuctionEvent.auction_id == uuid.UUID(auction_id), AuctionEvent.type == type_)
                .order_by(AuctionEvent.sequence)
            )
        )


async def closed_at(market: Auctions, auction_id: str) -> datetime:
    (closed,) = await stream_events(market, auction_id, "closed")
    return closed.created_at


async def test_many_auctions_close_once_each_with_two_replicas_racing(market: Auctions) -> None:
    seller = market.seller()
    with_bids = [await market.create(seller, ends_in=4) for _ in range(4)]
    without_bids = [await market.create(seller, ends_in=4) for _ in range(4)]
    for auction in with_bids:
        assert (await market.bid(auction["id"], market.user(), 1000)).status_code == 201

    for auction in without_bids:
        unsold = await market.wait_status(auction["id"], "unsold", timeout=10)
        assert unsold["status_reason"] == "no_bids"
    for auction in with_bids:
        await market.wait_status(auction["id"], "closing", timeout=10)

    async with market.sessions() as session:
        counts = dict(
            (
                await session.execute(
                    select(AuctionEvent.auction_id, func.count())
                    .where(AuctionEvent.type == "closed")
                    .group_by(AuctionEvent.auction_id)
                )
            ).all()
        )
    assert {str(k): v for k, v in counts.items()} == {
        auction["id"]: 1 for auction in with_bids + without_bids
    }
    for auction in with_bids + without_bids:
        late = await closed_at(market, auction["id"]) - parse_time(auction["ends_at"])
        assert timedelta(0) <= late < CLOSE_WITHIN


async def test_the_other_replica_closes_when_one_stops_just_before_the_end(
    market: Auctions,
) -> None:
    auction = await market.create(market.seller(), ends_in=3)
    bidder = market.user()
    assert (await market.bid(auction["id"], bidder, 1200, replica=0)).status_code == 201
    await market.stop(0)

    closing = await market.wait_status(auction["id"], "closing", timeout=10)
    assert closing["current_price"] == 1200
    late = await closed_at(market, auction["id"]) - parse_time(auction["ends_at"])
    assert timedelta(0) <= late < CLOSE_WITHIN
    (charge,) = await market.payments.charges(auction["id"], 1)
    assert charge.user_id == bidder.id and charge.amount == 1200


async def test_no_bid_is_accepted_after_the_close(market: Auctions) -> None:
    auction = await market.create(market.seller())
    assert (await market.bid(auction["id"], market.user(), 1000)).status_code == 201
    await market.end_now(auction["id"])
    await market.wait_status(auction["id"], "closing", timeout=10)
    for replica in (0, 1):
        late = await market.bid(auction["id"], market.user(), 5000, replica=replica)
        assert late.status_code == 409
        assert late.json()["code"] == "auction_not_open"
    bids = await market.bids(auction["id"])
    assert [bid["amount"] for bid in bids] == [1000]


async def test_soft_close_extends_the_end_at_most_max_extensions_times(market: Auctions) -> None:
    auction = await market.create(
        market.seller(), ends_in=3, soft_close_seconds=4, max_extensions=2
    )
    ends = [parse_time(auction["ends_at"])]
    for n, amount in enumerate((1000, 1100, 1200)):
        response = await market.bid(auction["id"], market.user(), amount, replica=n % 2)
        assert response.status_code == 201, response.text
        current = await market.get(auction["id"])
        ends.append(parse_time(current["ends_at"]))
        bid_time = parse_time(response.json()["created_at"])
        if n < 2:
            assert ends[-1] == bid_time + timedelta(seconds=4)
            assert current["extensions"] == n + 1
        else:
            assert ends[-1] == ends[-2]  # max_extensions reached
            assert current["extensions"] == 2
    extended = await stream_events(market, auction["id"], "extended")
    assert len(extended) == 2
    assert extended[-1].data["ends_at"].replace("Z", "+00:00") == ends[-1].isoformat()

    await market.wait_status(auction["id"], "closing", timeout=10)
    late = await closed_at(market, auction["id"]) - ends[-1]
    assert timedelta(0) <= late < CLOSE_WITHIN


async def test_buy_now_and_a_bid_reaching_its_price_race_and_one_wins(market: Auctions) -> None:
    seller = market.seller()
    outcomes: list[tuple[int, int]] = []
    for _ in range(4):
        auction = await market.create(seller, buy_now_price=5000)
        buyer, bidder = market.user(), market.user()
        bought, bid = await asyncio.gather(
            market.clients[0].post(
                f"{AUCTIONS}/{auction['id']}/buy-now",
                json={"payment_method_id": str(buyer.method_id)},
                headers=buyer.headers,
            ),
            market.bid(auction["id"], bidder, 5000, replica=1),
        )
        outcomes.append((bought.status_code, bid.status_code))
        current = await market.get(auction["id"])
        if bought.status_code == 202:
            assert bid.status_code == 409 and bid.json()["code"] == "auction_not_open"
            assert current["status"] == "closing" and current["bid_count"] == 0
            (charge,) = await market.payments.charges(auction["id"], 1)
            assert charge.user_id == buyer.id and charge.amount == 5000
        else:
            assert bid.status_code == 201
            assert bought.status_code == 409
            assert bought.json()["code"] == "buy_now_unavailable"
            assert current["status"] == "open" and current["current_price"] == 5000
    assert all(sorted(pair) in ([201, 409], [202, 409]) for pair in outcomes)


async def test_buy_now_stands_while_bids_are_below_its_price(market: Auctions) -> None:
    seller = market.seller()
    auction = await market.create(seller, buy_now_price=5000)
    assert (await market.bid(auction["id"], market.user(), 4000)).status_code == 201
    own = await market.clients[0].post(
        f"{AUCTIONS}/{auction['id']}/buy-now",
        json={"payment_method_id": str(seller.method_id)},
        headers=seller.headers,
    )
    assert own.status_code == 403 and own.json()["code"] == "own_auction"
    buyer = market.user()
    bought = await market.clients[1].post(
        f"{AUCTIONS}/{auction['id']}/buy-now",
        json={"payment_method_id": str(buyer.method_id)},
        headers=buyer.headers,
    )
    assert bought.status_code == 202, bought.text
    assert bought.json()["status"] == "closing"
    without = await market.create(seller)
    refused = await market.clients[0].post(
        f"{AUCTIONS}/{without['id']}/buy-now",
        json={"payment_method_id": str(buyer.method_id)},
        headers=buyer.headers,
    )
    assert refused.status_code == 409 and refused.json()["code"] == "buy_now_unavailable"
