"""``bazaar support replay``: rebuild the history from what the topics still hold.

The derived tables (events, links, progress) are emptied, then every partition of every
topic is read from its earliest offset, in a consumer group of its own, up to the end
it had when the replay began, through the same conversion and batch writes as live
ingestion. The result is the history live ingestion would have built from those
messages. A running support service may keep ingesting meanwhile: both write the same
rows under the same ids, so whichever lands first wins and the other changes nothing.
Support actions are support's own records and stay.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bazaar.contracts.topics import ALL_TOPICS
from bazaar.kit.config import PlatformSettings
from bazaar.kit.db import transaction
from bazaar.kit.logging import get_logger
from bazaar.kit.messaging.kafka import topic_name
from bazaar.support import repository
from bazaar.support.ingest import count_ingested, history_records, write_history

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ReplayResult:
    group: str
    partitions: int
    read: int
    recorded: int


async def replay_history(
    sessions: async_sessionmaker[AsyncSession],
    platform: PlatformSettings,
    *,
    group: str = "support",
    batch_size: int = 2000,
    topics: Sequence[str] = ALL_TOPICS,
) -> ReplayResult:
    """Empty the history and read every topic into it again; what was read and recorded."""
    async with transaction(sessions) as session:
        await repository.empty_history(session)
    replay_group = f"{platform.topic_prefix}{group}-replay-{uuid.uuid4().hex[:12]}"
    consumer = AIOKafkaConsumer(
        bootstrap_servers=platform.kafka_bootstrap_servers,
        group_id=replay_group,
        client_id=f"{group}-replay",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=batch_size,
    )
    await consumer.start()
    read = recorded = 0
    try:
        existing = await consumer.topics()
        partitions = [
            TopicPartition(name, number)
            for name in (topic_name(platform, topic) for topic in topics)
            if name in existing
            for number in sorted(consumer.partitions_for_topic(name) or ())
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        remaining = {tp for tp in partitions if await consumer.position(tp) < ends[tp]}
        log.info("history_replay_started", group=replay_group, partitions=len(partitions))
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=500, max_records=batch_size)
            records = [
                record
                for tp, tp_records in batch.items()
                for record in tp_records
                if record.offset < ends[tp]
            ]
            if records:
                rows = history_records(records, platform)
                new = await write_history(sessions, rows)
                count_ingested(rows, new, observe_lag=False)
                read += len(records)
                recorded += len(new)
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
            try:
                await consumer.commit()
            except KafkaError as exc:
                log.warning("history_replay_commit_failed", error=repr(exc))
    finally:
        await consumer.stop()
    log.info("history_replay_done", group=replay_group, read=read, recorded=recorded)
    return ReplayResult(replay_group, len(partitions), read, recorded)
