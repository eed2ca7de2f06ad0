"""Stream notifications stay under PostgreSQL's limit, in order, however many events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import orjson

from bazaar.auctions.models import AuctionSnapshot
from bazaar.auctions.service import NOTIFY_LIMIT, Announcements

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def an_auction(title: str = "Lot") -> AuctionSnapshot:
    return AuctionSnapshot(
        id=uuid.uuid4(),
        seller_id=uuid.uuid4(),
        title=title,
        currency="EUR",
        starting_price=100,
        min_increment=1,
        reserve_price=None,
        buy_now_price=None,
        starts_at=NOW,
        ends_at=NOW + timedelta(hours=1),
        soft_close_seconds=0,
        max_extensions=None,
        extensions=0,
        status="open",
        status_reason=None,
        current_price=None,
        bid_count=0,
        sequence=7,
        leader_id=None,
        leader_max=None,
        second_max=None,
        leader_payment_method_id=None,
        winner_id=None,
        final_price=None,
        payment_id=None,
        created_at=NOW,
        updated_at=NOW,
    )


def test_many_events_are_split_into_notifications_that_fit_and_keep_their_order() -> None:
    auction = an_auction("Ä lot with a long, non-ASCII title " * 5)
    news = Announcements(auction, NOW)
    for n in range(60):
        news.stream("bid", auction, bid={"amount": 100 + n})
    payloads = news.notifications()
    assert len(payloads) > 1
    assert all(len(payload.encode()) <= NOTIFY_LIMIT for payload in payloads)
    sequences = [sequence for payload in payloads for sequence, _, _ in orjson.loads(payload)["e"]]
    assert sequences == list(range(8, 68))


def test_no_events_no_notification() -> None:
    assert Announcements(an_auction(), NOW).notifications() == []
