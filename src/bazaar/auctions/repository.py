"""Every query of the auctions service, and only here.

The bid path is the hot one and has its own section below (plain asyncpg, a
compare-and-set write of everything in one statement). The rest uses the ORM; what it
announces is written by one statement too (``append``: stream events and outbox rows,
with both notifications).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import orjson
from sqlalchemy import Text, cast, exists, func, select, text, tuple_
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.auctions.models import (
    SNAPSHOT_FIELDS,
    Auction,
    AuctionEvent,
    AuctionSnapshot,
    Bid,
    SettlementAttempt,
)
from bazaar.auctions.saga import Candidate
from bazaar.kit.messaging.envelope import Envelope
from bazaar.kit.messaging.outbox import OUTBOX_CHANNEL

# Every replica LISTENs here; the payload names the auction and carries the events when
# they fit (see service.Announcements.notifications).
STREAM_CHANNEL = "bazaar_auction_events"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message for the outbox: its topic (the contract's name), key and envelope."""

    topic: str
    key: str
    envelope: Envelope


@dataclass(frozen=True, slots=True)
class StreamRow:
    """A stream event as stored: ``data`` is already JSON text."""

    sequence: int
    type: str
    data: str


@dataclass(frozen=True, slots=True)
class NewBid:
    id: uuid.UUID
    sequence: int
    bidder_id: uuid.UUID
    amount: int
    max_amount: int
    auto: bool
    payment_method_id: uuid.UUID


# --- the bid path ---------------------------------------------------------------------
#
# The hottest path of the service: every bid on a popular auction competes for one row.
# It runs on plain asyncpg (a pool of its own), and bidding.py funnels the bids that
# arrive together at one replica into one batch, so a batch costs two round trips and no
# explicit transaction, however many bids it holds:
#
# 1. ``look``: the auction's row as committed (no lock), and the answers already given
#    for the batch's Idempotency-Keys.
# 2. ``write_bids``: one statement, its own transaction: a conditional UPDATE of the
#    auction (compare-and-set on its ``sequence`` and ``status``, and its end still
#    after the bids) on which everything else depends: the keys' claims with their
#    answers, the bids, the stream events, the outbox rows and both notifications. If
#    another change committed since the look (another replica's bids, a close), nothing
#    is written and the batch is decided again.
#
# The row is locked only inside PostgreSQL while that statement runs, never across a
# round trip to this process. A batch that keeps losing the race takes the lock for its
# last try (``lock_snapshot`` in a transaction), where the write cannot lose.
#
# Idempotency-Key: the same table, fingerprint and lifetime as kit.idempotency's
# respond_once, folded into these statements. A live key (given less than the lifetime
# ago) stops the write; an expired one is taken over, as respond_once does.

_SNAPSHOT_COLUMNS = ", ".join(f"a.{name}" for name in SNAPSHOT_FIELDS)
_LOOK = f"""
    SELECT {_SNAPSHOT_COLUMNS},
        (SELECT json_agg(json_build_array(k.principal, k.key, k.request_hash,
                                          k.status_code, k.response::text))::text
         FROM idempotency_keys k
         JOIN unnest($2::text[], $3::text[]) AS c (principal, key)
           ON k.principal = c.principal AND k.key = c.key
         WHERE k.scope = $4 AND k.created_at >= now() - $5::interval)
    FROM (VALUES (1)) AS one (x)
    LEFT JOIN auctions a ON a.id = $1
"""  # noqa: S608
_LOCK = f"SELECT {', '.join(SNAPSHOT_FIELDS)} FROM auctions WHERE id = $1 FOR UPDATE"  # noqa: S608
_FIELDS = len(SNAPSHOT_FIELDS)


@dataclass(frozen=True, slots=True)
class KeyClaim:
    """An Idempotency-Key as kit.idempotency stores it."""

    principal: str
    scope: str
    key: str
    request_hash: str


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    request_hash: str
    status_code: int
    body: str


async def look(
    conn: asyncpg.Connection,
    auction_id: uuid.UUID,
    claims: Sequence[KeyClaim],
    lifetime: timedelta,
) -> tuple[AuctionSnapshot | None, dict[tuple[str, str], StoredAnswer]]:
    """The auction as committed (unlocked), and the answers already given for the keys
    (by principal and key; a batch is about one auction, so one scope)."""
    row = await conn.fetchrow(
        _LOOK,
        auction_id,
        [claim.principal for claim in claims],
        [claim.key for claim in claims],
        claims[0].scope if claims else "",
        lifetime,
    )
    auction = None if row[0] is None else AuctionSnapshot(*row[:_FIELDS])
    stored: dict[tuple[str, str], StoredAnswer] = {}
    for principal, key, request_hash, status_code, body in orjson.loads(row[_FIELDS] or "[]"):
        if status_code is not None and body is not None:
            stored[(principal, key)] = StoredAnswer(request_hash, status_code, body)
    return auction, stored


async def lock_snapshot(conn: asyncpg.Connection, auction_id: uuid.UUID) -> AuctionSnapshot | None:
    """The auction's row, locked until the transaction ends."""
    row = await conn.fetchrow(_LOCK, auction_id)
    return None if row is None else AuctionSnapshot(*row)


_WRITE_BIDS = """
    WITH auction AS (
        UPDATE auctions SET
            status = $2, current_price = $3, bid_count = $4, sequence = $5,
            leader_id = $6, leader_max = $7, second_max = $8, leader_payment_method_id = $9,
            ends_at = $10, extensions = $11, updated_at = $12
        WHERE id = $1 AND sequence = $36 AND status = $37 AND ends_at > $12
          AND NOT EXISTS (
              SELECT 1 FROM idempotency_keys k
              JOIN unnest($31::text[], $32::text[], $33::text[]) AS c (principal, scope, key)
                ON k.principal = c.principal AND k.scope = c.scope AND k.key = c.key
              WHERE k.created_at >= now() - $38::interval)
        RETURNING 1
    ), claim AS (
        INSERT INTO idempotency_keys (principal, scope, key, request_hash, status_code, response)
        SELECT c.principal, c.scope, c.key, c.request_hash, 201, c.response::json
        FROM unnest($31::text[], $32::text[], $33::text[], $34::text[], $35::text[])
             AS c (principal, scope, key, request_hash, response),
             auction
        ON CONFLICT (principal, scope, key) DO UPDATE
            SET request_hash = EXCLUDED.request_hash, status_code = EXCLUDED.status_code,
                response = EXCLUDED.response, headers = NULL, note = NULL, created_at = now()
            WHERE idempotency_keys.created_at < now() - $38::interval
        RETURNING 1
    ), go AS (
        SELECT 1 AS ok FROM auction
        WHERE (SELECT count(*) FROM claim) = cardinality($33::text[])
    ), new_bids AS (
        INSERT INTO bids (id, auction_id, sequence, bidder_id, amount, max_amount, auto,
                          payment_method_id, created_at)
        SELECT b.id, $1, b.sequence, b.bidder_id, b.amount, b.max_amount, b.auto,
               b.payment_method_id, $12
        FROM unnest($13::uuid[], $14::bigint[], $15::uuid[], $16::bigint[], $17::bigint[],
                    $18::boolean[], $19::uuid[])
             AS b (id, sequence, bidder_id, amount, max_amount, auto, payment_method_id)
        WHERE EXISTS (SELECT 1 FROM go)
    ), events AS (
        INSERT INTO auction_events (auction_id, sequence, type, data, created_at)
        SELECT $1, e.sequence, e.type, e.data::json, $12
        FROM unnest($20::bigint[], $21::text[], $22::text[]) AS e (sequence, type, data)
        WHERE EXISTS (SELECT 1 FROM go)
    ), messages AS (
        INSERT INTO outbox (message_id, topic, key, type, payload)
        SELECT m.message_id, m.topic, m.key, m.type, m.payload
        FROM unnest($23::text[], $24::text[], $25::text[], $26::text[], $27::bytea[])
             AS m (message_id, topic, key, type, payload)
        WHERE EXISTS (SELECT 1 FROM go)
    ), relay_notified AS (
        SELECT pg_notify($28, '') FROM go
    ), stream_notified AS (
        -- unnest yields the payloads in order, and they are notified in that order.
        SELECT pg_notify($29, p) FROM go, unnest($30::text[]) AS p
    )
    SELECT (SELECT count(*) FROM go),
           (SELECT count(*) FROM relay_notified) + (SELECT count(*) FROM stream_notified),
           -- The auction changed but a key's claim did not go in: impossible (a live key
           -- stops the UPDATE); should it ever happen, this division by zero undoes all.
           1 / (1 - (SELECT count(*) FROM auction)::int + (SELECT count(*) FROM go)::int)
"""


async def write_bids(
    conn: asyncpg.Connection,
    *,
    before: AuctionSnapshot,
    after: AuctionSnapshot,
    bids: Sequence[NewBid],
    events: Sequence[StreamRow],
    messages: Sequence[Outgoing],
    stream_payloads: Sequence[str],
    now: datetime,
    claims: Sequence[tuple[KeyClaim, str]],
    lifetime: timedelta,
) -> bool:
    """Write bids in one statement if the auction is still as ``before`` (its
    ``sequence`` and ``status``) and still open at ``now``: the auction row as ``after``,
    the keys' claims with their answers (201, JSON text), the bids, the stream events,
    the outbox rows, and the notifications. False: it changed, or one of the keys was
    used meanwhile; then nothing was written."""
    written = await conn.fetchval(
        _WRITE_BIDS,
        after.id,
        after.status,
        after.current_price,
        after.bid_count,
        after.sequence,
        after.leader_id,
        after.leader_max,
        after.second_max,
        after.leader_payment_method_id,
        after.ends_at,
        after.extensions,
        now,
        [bid.id for bid in bids],
        [bid.sequence for bid in bids],
        [bid.bidder_id for bid in bids],
        [bid.amount for bid in bids],
        [bid.max_amount for bid in bids],
        [bid.auto for bid in bids],
        [bid.payment_method_id for bid in bids],
        [event.sequence for event in events],
        [event.type for event in events],
        [event.data for event in events],
        [message.envelope.id for message in messages],
        [message.topic for message in messages],
        [message.key for message in messages],
        [message.envelope.type for message in messages],
        [message.envelope.to_bytes() for message in messages],
        OUTBOX_CHANNEL,
        STREAM_CHANNEL,
        list(stream_payloads),
        [claim.principal for claim, _ in claims],
        [claim.scope for claim, _ in claims],
        [claim.key for claim, _ in claims],
        [claim.request_hash for claim, _ in claims],
        [answer for _, answer in claims],
        before.sequence,
        before.status,
        lifetime,
    )
    return bool(written)


async def no_reset(conn: asyncpg.Connection) -> None:
    """The bid pool's reset: its connections never LISTEN, lock or SET anything, so
    asyncpg's default reset (a round trip on every release) has nothing to undo; a
    transaction left open by an error is rolled back."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


# --- events and messages on the other paths -------------------------------------------

_APPEND = text(
    """
    WITH events AS (
        INSERT INTO auction_events (auction_id, sequence, type, data, created_at)
        SELECT CAST(:auction_id AS uuid), e.sequence, e.type, CAST(e.data AS json), :now
        FROM unnest(CAST(:event_sequences AS bigint[]), CAST(:event_types AS text[]),
                    CAST(:event_data AS text[])) AS e(sequence, type, data)
    ), messages AS (
        INSERT INTO outbox (message_id, topic, key, type, payload)
        SELECT m.message_id, m.topic, m.key, m.type, m.payload
        FROM unnest(CAST(:message_ids AS text[]), CAST(:topics AS text[]),
                    CAST(:keys AS text[]), CAST(:types AS text[]),
                    CAST(:payloads AS bytea[])) AS m(message_id, topic, key, type, payload)
    ), relay_notified AS (
        SELECT pg_notify(:outbox_channel, '')
    ), stream_notified AS (
        -- unnest yields the payloads in order, and they are notified in that order.
        SELECT pg_notify(:stream_channel, p) FROM unnest(CAST(:stream_payloads AS text[])) AS p
    )
    SELECT (SELECT count(*) FROM relay_notified), (SELECT count(*) FROM stream_notified)
    """
)


async def append(
    session: AsyncSession,
    auction_id: uuid.UUID,
    *,
    events: Sequence[StreamRow],
    messages: Sequence[Outgoing],
    stream_payloads: Sequence[str],
    now: datetime,
) -> None:
    """Add stream events and outbox messages in the caller's transaction, and notify."""
    if not events and not messages:
        return
    await session.execute(
        _APPEND,
        {
            "auction_id": auction_id,
            "now": now,
            **_event_params(events),
            **_message_params(messages),
            "outbox_channel": OUTBOX_CHANNEL,
            "stream_channel": STREAM_CHANNEL,
            "stream_payloads": list(stream_payloads),
        },
    )


def _event_params(events: Sequence[StreamRow]) -> dict[str, Any]:
    return {
        "event_sequences": [event.sequence for event in events],
        "event_types": [event.type for event in events],
        "event_data": [event.data for event in events],
    }


def _message_params(messages: Sequence[Outgoing]) -> dict[str, Any]:
    return {
        "message_ids": [message.envelope.id for message in messages],
        "topics": [message.topic for message in messages],
        "keys": [message.key for message in messages],
        "types": [message.envelope.type for message in messages],
        "payloads": [message.envelope.to_bytes() for message in messages],
    }


# --- auctions -------------------------------------------------------------------------


async def add_auction(session: AsyncSession, auction: Auction) -> Auction:
    session.add(auction)
    await session.flush()
    await session.refresh(auction)
    return auction


async def get_auction(
    session: AsyncSession, auction_id: uuid.UUID, *, for_update: bool = False
) -> Auction | None:
    statement = select(Auction).where(Auction.id == auction_id)
    if for_update:
        statement = statement.with_for_update()
    return (await session.execute(statement)).scalar_one_or_none()


async def list_auctions(
    session: AsyncSession,
    *,
    limit: int,
    status: str | None,
    seller_id: uuid.UUID | None,
    after: tuple[datetime, uuid.UUID] | None,
    bidder_id: uuid.UUID | None = None,
) -> list[Auction]:
    """Newest first, keyset-paginated on (created_at, id); ``bidder_id``: only auctions
    that bidder has a bid on."""
    statement = select(Auction)
    if status is not None:
        statement = statement.where(Auction.status == status)
    if seller_id is not None:
        statement = statement.where(Auction.seller_id == seller_id)
    if bidder_id is not None:
        statement = statement.where(
            exists().where(Bid.auction_id == Auction.id, Bid.bidder_id == bidder_id)
        )
    if after is not None:
        statement = statement.where(tuple_(Auction.created_at, Auction.id) < tuple_(*after))
    statement = statement.order_by(Auction.created_at.desc(), Auction.id.desc()).limit(limit)
    return list((await session.execute(statement)).scalars())


_DUE = text(
    """
    SELECT
        EXISTS (SELECT 1 FROM auctions WHERE status = 'scheduled' AND starts_at <= :now),
        EXISTS (SELECT 1 FROM auctions
                WHERE status IN ('open', 'scheduled') AND ends_at <= :now),
        EXISTS (SELECT 1 FROM auctions
                WHERE status = 'closing' AND settlement_deadline <= :now)
    """
)


@dataclass(frozen=True, slots=True)
class Due:
    """Whether anything waits for the scheduler: to open, to close, a settlement step."""

    to_open: bool
    to_close: bool
    settlements: bool


async def due(session: AsyncSession, now: datetime) -> Due:
    """One cheap look (three index probes) before the scheduler takes any lock."""
    row = (await session.execute(_DUE, {"now": now})).one()
    return Due(bool(row[0]), bool(row[1]), bool(row[2]))


async def due_to_open(session: AsyncSession, now: datetime, limit: int) -> list[Auction]:
    """Scheduled auctions whose start has come, locked; ones another replica holds are
    skipped."""
    statement = (
        select(Auction)
        .where(Auction.status == "scheduled", Auction.starts_at <= now)
        .order_by(Auction.starts_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list((await session.execute(statement)).scalars())


async def due_to_close(
    session: AsyncSession, now: datetime, limit: int, *, skip_locked: bool = True
) -> list[Auction]:
    """Open (or still scheduled) auctions whose end has come, locked.

    With ``skip_locked`` rows held by another transaction (a bid, another replica's
    closer) are passed over; without it the caller waits for them, and the status
    condition, checked again once the lock is granted, drops any that closed meanwhile.
    """
    statement = (
        select(Auction)
        .where(Auction.status.in_(("open", "scheduled")), Auction.ends_at <= now)
        .order_by(Auction.ends_at)
        .limit(limit)
        .with_for_update(skip_locked=skip_locked)
    )
    return list((await session.execute(statement)).scalars())


async def settlements_past_deadline(
    session: AsyncSession, now: datetime, limit: int
) -> list[Auction]:
    statement = (
        select(Auction)
        .where(Auction.status == "closing", Auction.settlement_deadline <= now)
        .order_by(Auction.settlement_deadline)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list((await session.execute(statement)).scalars())


# --- bids -----------------------------------------------------------------------------


async def list_bids(
    session: AsyncSession, auction_id: uuid.UUID, *, limit: int, before_sequence: int | None
) -> list[Bid]:
    """Newest first (by acceptance order)."""
    statement = select(Bid).where(Bid.auction_id == auction_id)
    if before_sequence is not None:
        statement = statement.where(Bid.sequence < before_sequence)
    statement = statement.order_by(Bid.sequence.desc()).limit(limit)
    return list((await session.execute(statement)).scalars())


@dataclass(frozen=True, slots=True)
class BidderBids:
    """One bidder's bids on one auction, summed up."""

    auction_id: uuid.UUID
    best_amount: int
    bids: int
    last_bid_at: datetime


async def bids_of_bidder(
    session: AsyncSession, bidder_id: uuid.UUID, auction_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, BidderBids]:
    """The bidder's highest bid, bid count and last bid time on each of ``auction_ids``."""
    if not auction_ids:
        return {}
    rows = await session.execute(
        select(Bid.auction_id, func.max(Bid.amount), func.count(), func.max(Bid.created_at))
        .where(Bid.bidder_id == bidder_id, Bid.auction_id.in_(auction_ids))
        .group_by(Bid.auction_id)
    )
    return {
        auction_id: BidderBids(auction_id, best, count, last)
        for auction_id, best, count, last in rows
    }


async def best_bid_per_bidder(session: AsyncSession, auction_id: uuid.UUID) -> list[Candidate]:
    """Each bidder's highest bid (the latest, as amounts only rise) and its method."""
    rows = await session.execute(
        select(Bid.bidder_id, Bid.amount, Bid.payment_method_id)
        .where(Bid.auction_id == auction_id)
        .ext(distinct_on(Bid.bidder_id))
        .order_by(Bid.bidder_id, Bid.amount.desc())
    )
    return [Candidate(row.bidder_id, row.amount, row.payment_method_id) for row in rows]


# --- settlement -----------------------------------------------------------------------


async def attempts_of(session: AsyncSession, auction_id: uuid.UUID) -> list[SettlementAttempt]:
    statement = (
        select(SettlementAttempt)
        .where(SettlementAttempt.auction_id == auction_id)
        .order_by(SettlementAttempt.attempt)
    )
    return list((await session.execute(statement)).scalars())


async def get_attempt(session: AsyncSession, payment_id: uuid.UUID) -> SettlementAttempt | None:
    return await session.get(SettlementAttempt, payment_id)


async def add_attempt(session: AsyncSession, attempt: SettlementAttempt) -> None:
    session.add(attempt)
    await session.flush()


# --- the stream -----------------------------------------------------------------------


async def events_after(
    session: AsyncSession, auction_id: uuid.UUID, after: int, limit: int = 1000
) -> list[StreamRow]:
    rows = await session.execute(
        select(
            AuctionEvent.sequence,
            AuctionEvent.type,
            cast(AuctionEvent.data, Text),
        )
        .where(AuctionEvent.auction_id == auction_id, AuctionEvent.sequence > after)
        .order_by(AuctionEvent.sequence)
        .limit(limit)
    )
    return [StreamRow(sequence, type_, data) for sequence, type_, data in rows]
