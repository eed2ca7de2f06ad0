"""A database with the platform's tables (outbox, inbox, idempotency keys) for kit tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import Column, Integer, MetaData, String, Table
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bazaar.kit.config import PlatformSettings
from bazaar.kit.db import (
    create_engine,
    create_session_factory,
    database_url,
    drop_database,
    ensure_database,
)
from bazaar.kit.messaging.kafka import topic_name
from bazaar.kit.tables import platform_metadata

test_metadata = MetaData()
effects = Table(
    "effects",
    test_metadata,
    Column("message_id", String(64), primary_key=True),
    Column("times", Integer, nullable=False),
)


@dataclass
class ServiceDatabase:
    url: URL
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]


@pytest.fixture
async def service_db(postgres_url: URL) -> AsyncIterator[ServiceDatabase]:
    """A database holding the platform's tables and a table of handler effects."""
    name = f"bz_kit_{uuid.uuid4().hex[:10]}"
    await ensure_database(postgres_url, name)
    url = database_url(postgres_url, name)
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(platform_metadata.create_all)
        await conn.run_sync(test_metadata.create_all)
    try:
        yield ServiceDatabase(url, engine, create_session_factory(engine))
    finally:
        await engine.dispose()
        await drop_database(postgres_url, name)


async def committed_total(platform: PlatformSettings, group: str, topic: str, wanted: int) -> bool:
    """Whether consumer group ``group`` committed offsets on ``topic`` that add up to at
    least ``wanted`` records, over all its partitions: it has handled that many."""
    reader = AIOKafkaConsumer(
        bootstrap_servers=platform.kafka_bootstrap_servers,
        group_id=f"{platform.topic_prefix}{group}",
        enable_auto_commit=False,
    )
    await reader.start()
    try:
        name = topic_name(platform, topic)
        partitions = [
            TopicPartition(name, number) for number in reader.partitions_for_topic(name) or ()
        ]
        committed = [await reader.committed(partition) or 0 for partition in partitions]
    finally:
        await reader.stop()
    return sum(committed) >= wanted
