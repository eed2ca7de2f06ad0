"""The history's intake: every topic of the platform, read in batches into support's database.

Support does not handle messages one by one like the services' consumers
(:class:`bazaar.kit.messaging.consumer.MessageConsumer`: a transaction and an inbox
claim per message). It records them, and recording is naturally idempotent: the
envelope id is the history's primary key. So one loop takes whatever the broker has
(``getmany``, up to ``ingest_batch_size`` records), turns it into rows, writes them in
one transaction with one multi-row ``INSERT … ON CONFLICT DO NOTHING`` per table, and
only then commits the offsets (in the background, at most every half second while
messages keep coming, as the services' consumers do). A crash between the two re-reads
what was not committed, which changes nothing. See docs/adr/0007-support-history-batch-ingestion.md.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Histogram
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bazaar.contracts.topics import ALL_TOPICS
from bazaar.kit.config import PlatformSettings
from bazaar.kit.db import refused_as_data, transaction
from bazaar.kit.logging import get_logger
from bazaar.kit.messaging.consumer import CONSUMER_LAG, OffsetCommits
from bazaar.kit.messaging.envelope import Envelope
from bazaar.kit.messaging.kafka import ensure_topics, topic_name
from bazaar.support import repository
from bazaar.support.history import (
    HistoryRecord,
    json_text,
    progress_by_entity,
    record_of,
    unparsable_record,
)

log = get_logger(__name__)

EVENTS_INGESTED = Counter(
    "bazaar_support_events_ingested_total",
    "Messages written to the support history for the first time, by CloudEvents type",
    ["type"],
)
EVENTS_DUPLICATE = Counter(
    "bazaar_support_events_duplicate_total",
    "Messages read that the history already held (redeliveries, overlapping replays)",
)
INGESTION_LAG = Histogram(
    "bazaar_support_ingestion_lag_seconds",
    "From a message's envelope time to its row being committed in the history",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)


def history_records(
    records: Sequence[ConsumerRecord[bytes, bytes]], platform: PlatformSettings
) -> list[HistoryRecord]:
    """The history rows of a batch, each message once (the first of repeated ids)."""
    rows: dict[str, HistoryRecord] = {}
    for record in records:
        topic = record.topic.removeprefix(platform.topic_prefix)
        raw = record.value or b""
        try:
            envelope = Envelope.from_bytes(raw)
            row = record_of(envelope, topic=topic, partition=record.partition, offset=record.offset)
        except (ValidationError, ValueError, TypeError) as exc:
            # Not an envelope, or one whose data cannot be written as JSON: kept raw, so
            # that no message stops the history or goes unrecorded.
            row = unparsable_record(
                raw,
                topic=topic,
                partition=record.partition,
                offset=record.offset,
                timestamp_ms=record.timestamp,
                error=str(exc),
            )
        rows.setdefault(row.id, row)
    return list(rows.values())


async def write_history(
    sessions: async_sessionmaker[AsyncSession], records: Sequence[HistoryRecord]
) -> set[str]:
    """Write a batch in one transaction; the ids that were new to the history.

    A row PostgreSQL refuses (bad data that slipped past the cleaning in
    :mod:`bazaar.support.history`) must not stop the history: the batch is then written
    row by row, and a refused row is kept with its data replaced by the refusal.
    """
    try:
        async with transaction(sessions) as session:
            return await _write(session, records)
    except DBAPIError as exc:
        if not refused_as_data(exc):
            raise
        log.warning("history_batch_refused", rows=len(records), error=str(exc.orig)[:500])
    new: set[str] = set()
    for record in records:
        try:
            async with transaction(sessions) as session:
                new |= await _write(session, [record])
        except DBAPIError as exc:
            if not refused_as_data(exc):
                raise
            log.error(
                "history_row_refused", id=record.id, type=record.type, error=str(exc.orig)[:500]
            )
            stub = replace(
                record,
                data_json=json_text({"unrecordable": str(exc.orig)[:500]}),
                links=(),
                progress=None,
            )
            async with transaction(sessions) as session:
                new |= await _write(session, [stub])
    return new


async def _write(session: AsyncSession, records: Sequence[HistoryRecord]) -> set[str]:
    new = await repository.insert_events(session, records)
    fresh = [record for record in records if record.id in new]
    # A message already in the history brought its links and progress with it (same
    # transaction), so only new ones add theirs.
    await repository.insert_links(session, [link for record in fresh for link in record.links])
    await repository.upsert_progress(session, progress_by_entity(fresh).values())
    return new


def count_ingested(records: Sequence[HistoryRecord], new: set[str], *, observe_lag: bool) -> None:
    """Metrics of a committed batch: new rows by type, duplicates, and (live) their lag."""
    by_type: collections.Counter[str] = collections.Counter()
    now = datetime.now(UTC)
    for record in records:
        if record.id not in new:
            continue
        by_type[record.type] += 1
        if observe_lag:
            INGESTION_LAG.observe(max(0.0, (now - record.occurred_at).total_seconds()))
    for type_, count in by_type.items():
        EVENTS_INGESTED.labels(type_).inc(count)
    duplicates = len(records) - sum(by_type.values())
    if duplicates:
        EVENTS_DUPLICATE.inc(duplicates)


class HistoryIngester:
    """Reads every topic in consumer group ``group`` into the history. ``run()`` loops
    until cancelled, reconnecting to the broker and retrying the database as needed."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        platform: PlatformSettings,
        group: str,
        batch_size: int,
        poll_ms: int,
        topics: Sequence[str] = ALL_TOPICS,
    ) -> None:
        self._sessions = sessions
        self._platform = platform
        self._group = group
        self._batch_size = batch_size
        self._poll_ms = poll_ms
        self._topics = list(topics)
        self.assigned = asyncio.Event()

    async def run(self) -> None:
        backoff = 0.2
        while True:
            consumer = AIOKafkaConsumer(
                *(topic_name(self._platform, topic) for topic in self._topics),
                bootstrap_servers=self._platform.kafka_bootstrap_servers,
                group_id=f"{self._platform.topic_prefix}{self._group}",
                client_id=f"{self._group}-history",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                metadata_max_age_ms=3000,
                session_timeout_ms=self._platform.kafka_session_timeout_ms,
                heartbeat_interval_ms=self._platform.kafka_heartbeat_interval_ms,
                max_poll_records=self._batch_size,
                fetch_max_wait_ms=self._poll_ms,
            )
            try:
                # Subscribing to a topic nobody created yet would miss it until the
                # next metadata refresh; making them is idempotent.
                await ensure_topics(self._platform, self._topics, timeout=10)
                await consumer.start()
                backoff = 0.2
                await self._consume(consumer)
            except asyncio.CancelledError:
                raise
            except KafkaError as exc:
                log.warning("history_consumer_restarting", error=repr(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                self.assigned.clear()
                try:
                    await consumer.stop()
                except KafkaError as exc:
                    log.warning("history_consumer_stop_failed", error=repr(exc))

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        # Offsets of written batches go to the broker in the background, at most every
        # half second while messages keep coming (as the services' consumers commit):
        # after a crash or a rebalance the history's primary key absorbs what is read
        # again.
        offsets = OffsetCommits(consumer, self._group)
        try:
            while True:
                batch = await consumer.getmany(
                    timeout_ms=self._poll_ms, max_records=self._batch_size
                )
                if consumer.assignment():
                    self.assigned.set()
                if not batch:
                    offsets.commit_handled(idle=True)
                    continue
                records = [record for partition in batch.values() for record in partition]
                rows = history_records(records, self._platform)
                new = await self._write_until_done(rows)
                count_ingested(rows, new, observe_lag=True)
                self._note_lag(consumer, batch)
                for partition, written in batch.items():
                    offsets.handled(partition, written[-1].offset + 1)
                offsets.commit_handled()
        finally:
            await offsets.close()

    async def _write_until_done(self, rows: Sequence[HistoryRecord]) -> set[str]:
        """Keep trying while the database is unreachable: the batch must land before its
        offsets are committed."""
        backoff = 0.2
        while True:
            try:
                return await write_history(self._sessions, rows)
            except (SQLAlchemyError, OSError) as exc:
                log.warning("history_write_failed", rows=len(rows), error=repr(exc)[:500])
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _note_lag(
        self,
        consumer: AIOKafkaConsumer,
        batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
    ) -> None:
        for partition, records in batch.items():
            highwater = consumer.highwater(partition)
            if highwater is not None and records:
                CONSUMER_LAG.labels(self._group, partition.topic, partition.partition).set(
                    max(0, highwater - records[-1].offset - 1)
                )
