"""The live stream of an auction (``GET /api/auctions/{id}/stream``, Server-Sent Events).

Every change to an auction writes its stream events into ``auction_events`` in the
transaction of the change and sends a ``NOTIFY`` that PostgreSQL delivers at commit.
Each replica holds one connection that LISTENs (:class:`StreamHub`) and hands every
notification to the clients connected to it, so a client sees the bids accepted by any
replica. The table makes the stream exact: a client resuming with ``Last-Event-ID``
(or one whose queue overflowed, or whose replica's LISTEN connection was lost for a
while) reads what it missed from there, and duplicates are dropped by sequence number.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bazaar.auctions import repository
from bazaar.auctions.models import AuctionSnapshot
from bazaar.auctions.repository import STREAM_CHANNEL
from bazaar.auctions.service import public_state
from bazaar.kit.logging import get_logger

log = get_logger(__name__)

HEARTBEAT = b": keep-alive\n\n"
# A client this far behind stops getting events pushed and reads them from the table.
MAX_QUEUED = 10_000
REPLAY_BATCH = 1000


def frame(sequence: int, type_: str, data: str) -> bytes:
    """One SSE event; ``data`` is compact JSON (no newlines)."""
    return f"id: {sequence}\nevent: {type_}\ndata: {data}\n\n".encode()


@dataclass(frozen=True, slots=True)
class Frame:
    sequence: int
    payload: bytes


class _Gap:
    """Something was missed: read the table from the last event sent."""


GAP = _Gap()


class Subscription:
    def __init__(self, auction_id: uuid.UUID) -> None:
        self.auction_id = auction_id
        self.queue: asyncio.Queue[list[Frame] | _Gap] = asyncio.Queue()

    def push(self, item: list[Frame] | _Gap) -> None:
        if self.queue.qsize() >= MAX_QUEUED:
            # A slow client: drop what is queued; it catches up from the table.
            while not self.queue.empty():
                self.queue.get_nowait()
            item = GAP
        self.queue.put_nowait(item)


class StreamHub:
    """One LISTEN connection per replica, fanning notifications out to its clients."""

    def __init__(self, dsn: str, *, retry_seconds: float = 1.0) -> None:
        self._dsn = dsn
        self._retry = retry_seconds
        self._subscribers: dict[uuid.UUID, set[Subscription]] = {}
        self.listening = asyncio.Event()

    def subscribe(self, auction_id: uuid.UUID) -> Subscription:
        subscription = Subscription(auction_id)
        self._subscribers.setdefault(auction_id, set()).add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscribers = self._subscribers.get(subscription.auction_id)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[subscription.auction_id]

    @property
    def clients(self) -> int:
        return sum(len(subscribers) for subscribers in self._subscribers.values())

    async def run(self) -> None:
        """Listen until cancelled, reconnecting after a lost connection."""
        while True:
            lost = asyncio.Event()

            def on_termination(_: Any, lost: asyncio.Event = lost) -> None:
                lost.set()

            try:
                connection: asyncpg.Connection = await asyncpg.connect(self._dsn)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("stream_listen_connect_failed", error=repr(exc), retry_in=self._retry)
                await asyncio.sleep(self._retry)
                continue
            try:
                connection.add_termination_listener(on_termination)
                await connection.add_listener(STREAM_CHANNEL, self._on_notification)
                self.listening.set()
                # Whatever was committed while nobody listened is in the table.
                self._push_all(GAP)
                await lost.wait()
                log.warning("stream_listen_connection_lost", retry_in=self._retry)
            finally:
                self.listening.clear()
                with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    await asyncio.shield(connection.close(timeout=2))
            await asyncio.sleep(self._retry)

    def _push_all(self, item: _Gap) -> None:
        for subscribers in self._subscribers.values():
            for subscription in subscribers:
                subscription.push(item)

    def _on_notification(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            message = orjson.loads(payload)
            auction_id = uuid.UUID(message["a"])
        except (orjson.JSONDecodeError, KeyError, ValueError, TypeError):
            log.warning("stream_notification_malformed", payload=payload[:200])
            return
        subscribers = self._subscribers.get(auction_id)
        if not subscribers:
            return
        events = message.get("e")
        item: list[Frame] | _Gap
        if events is None:
            item = GAP  # too big to notify: the events are in the table
        else:
            item = [
                Frame(sequence, frame(sequence, type_, orjson.dumps(data).decode()))
                for sequence, type_, data in events
            ]
        for subscription in subscribers:
            subscription.push(item)


async def event_stream(
    hub: StreamHub,
    sessions: async_sessionmaker[AsyncSession],
    auction_id: uuid.UUID,
    *,
    last_event_id: int | None,
    heartbeat_seconds: float,
) -> AsyncIterator[bytes]:
    """The SSE body for one client.

    Subscribes first, then reads the table, so nothing committed in between is lost;
    every event is sent once, in sequence order. Without ``last_event_id`` the client
    first gets a ``state`` event with the auction as it stands (its id is the current
    sequence number, to resume from).
    """
    subscription = hub.subscribe(auction_id)
    try:
        yield b"retry: 1000\n\n"
        last = last_event_id
        if last is None:
            async with sessions() as session:
                auction = await repository.get_auction(session, auction_id)
            if auction is None:
                return
            last = auction.sequence
            state = orjson.dumps(public_state(AuctionSnapshot.of(auction))).decode()
            yield frame(last, "state", state)
        async for sequence, chunk in _replay(sessions, auction_id, last):
            last = sequence
            yield chunk
        while True:
            try:
                item = await asyncio.wait_for(subscription.queue.get(), heartbeat_seconds)
            except TimeoutError:
                yield HEARTBEAT
                continue
            if isinstance(item, _Gap) or item[0].sequence > last + 1:
                async for sequence, chunk in _replay(sessions, auction_id, last):
                    last = sequence
                    yield chunk
                continue
            for event in item:
                if event.sequence == last + 1:
                    last = event.sequence
                    yield event.payload
    finally:
        hub.unsubscribe(subscription)


async def _replay(
    sessions: async_sessionmaker[AsyncSession], auction_id: uuid.UUID, after: int
) -> AsyncIterator[tuple[int, bytes]]:
    """The stored events after ``after``: (sequence number, SSE frame)."""
    while True:
        async with sessions() as session:
            rows = await repository.events_after(session, auction_id, after, REPLAY_BATCH)
        for row in rows:
            after = row.sequence
            yield row.sequence, frame(row.sequence, row.type, row.data)
        if len(rows) < REPLAY_BATCH:
            return
