"""The outbox relay: moves committed outbox rows to Kafka, in order, at least once.

One relay per service database publishes at a time (a PostgreSQL advisory lock
elects it), so the messages of one entity leave in the order they were committed
even with several replicas running; the others wait to take over. The leader
wakes on ``NOTIFY`` from :func:`~bazaar.kit.messaging.outbox.publish` and sends a
whole batch before it waits for the acknowledgements, so a burst of commits
costs one round trip to the broker, not one per message. Rows are deleted only
after the broker acknowledged them, and in the same statement that reads the next
batch (one statement per wake instead of two: at the next wake or idle poll, so
acknowledged rows stay up to ``idle_poll_seconds``); a crash, or a new leader, sends
the last batch again, which the consumers' inbox absorbs.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Gauge
from sqlalchemy.engine import URL

from bazaar.kit.config import PlatformSettings
from bazaar.kit.db import asyncpg_dsn
from bazaar.kit.logging import get_logger
from bazaar.kit.messaging.kafka import create_producer, ensure_topics, topic_name
from bazaar.kit.messaging.outbox import OUTBOX_CHANNEL

log = get_logger(__name__)

OUTBOX_PUBLISHED = Counter(
    "bazaar_outbox_published_total", "Outbox messages acknowledged by the broker", ["topic"]
)
OUTBOX_BACKLOG = Gauge("bazaar_outbox_backlog", "Outbox rows seen waiting at the relay's last look")


class OutboxRelay:
    """Publishes one service's outbox. ``run()`` loops until cancelled."""

    def __init__(
        self,
        *,
        service: str,
        database_url: str | URL,
        settings: PlatformSettings,
        batch_size: int = 500,
        idle_poll_seconds: float = 1.0,
    ) -> None:
        self.service = service
        self._dsn = asyncpg_dsn(database_url)
        self._settings = settings
        self._batch_size = batch_size
        self._idle_poll = idle_poll_seconds
        # Same lock id in every replica of this service (and only this service's database).
        self._lock_id = zlib.crc32(f"bazaar-outbox-relay:{service}".encode())
        self._producer: AIOKafkaProducer | None = None
        self.is_leader = False

    async def run(self) -> None:
        backoff = 0.2
        while True:
            try:
                await self._run_once()
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, KafkaError) as exc:
                log.warning("outbox_relay_restarting", error=repr(exc), retry_in=backoff)
                self.is_leader = False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                await self._stop_producer()

    async def _run_once(self) -> None:
        conn: asyncpg.Connection = await asyncpg.connect(self._dsn)
        sent: list[int] = []
        try:
            while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", self._lock_id):
                await asyncio.sleep(1.0)
            self.is_leader = True
            wake = asyncio.Event()

            def on_notify(*_: Any) -> None:
                wake.set()

            await conn.add_listener(OUTBOX_CHANNEL, on_notify)
            while True:
                wake.clear()
                # The statement's parts share one snapshot: the select still sees the
                # rows being deleted, hence the filter.
                rows = await conn.fetch(
                    "WITH acknowledged AS (DELETE FROM outbox WHERE id = ANY($2::bigint[])) "
                    "SELECT id, topic, key, payload FROM outbox "
                    "WHERE id <> ALL($2::bigint[]) ORDER BY id LIMIT $1",
                    self._batch_size,
                    sent,
                )
                OUTBOX_BACKLOG.set(len(rows))
                sent = []
                if rows:
                    await self._send(rows)
                    sent = [row["id"] for row in rows]
                if len(rows) == self._batch_size:
                    continue
                try:
                    # Not asyncio.wait_for: on Python 3.11 it swallows a cancellation that
                    # arrives as the event fires (gh-86296), and the relay outlives shutdown.
                    async with asyncio.timeout(self._idle_poll):
                        await wake.wait()
                except TimeoutError:
                    pass
        finally:
            if sent and self.is_leader:
                # Stopping: what the broker took is not sent again by the next leader.
                with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    async with asyncio.timeout(1.0):
                        await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", sent)
            self.is_leader = False
            await conn.close()

    async def _send(self, rows: list[asyncpg.Record]) -> None:
        """Send a batch and wait for every acknowledgement, retrying until the broker takes it."""
        backoff = 0.2
        while True:
            producer = await self._ensure_producer()
            try:
                copies = max(1, self._settings.chaos_duplicate_deliveries)
                pending = [
                    await producer.send(
                        topic_name(self._settings, row["topic"]),
                        value=bytes(row["payload"]),
                        key=row["key"].encode() if row["key"] else None,
                    )
                    for row in rows
                    for _ in range(copies)
                ]
                await asyncio.gather(*pending)
                for row in rows:
                    OUTBOX_PUBLISHED.labels(row["topic"]).inc()
                return
            except KafkaError as exc:
                # A restarted in-memory broker has forgotten its topics: make them again.
                log.warning("outbox_send_failed", error=repr(exc), retry_in=backoff)
                await self._stop_producer()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                try:
                    await ensure_topics(self._settings, {row["topic"] for row in rows}, timeout=5)
                except KafkaError as topic_exc:
                    log.warning("outbox_topics_unavailable", error=repr(topic_exc))

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = create_producer(self._settings, client_id=f"{self.service}-relay")
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def _stop_producer(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            try:
                await producer.stop()
            except KafkaError as exc:
                log.warning("outbox_producer_stop_failed", error=repr(exc))
