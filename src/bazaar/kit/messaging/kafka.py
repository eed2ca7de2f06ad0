"""Kafka clients built from the platform settings (aiokafka), and topic administration."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from bazaar.contracts.topics import DEAD_LETTER
from bazaar.kit.config import PlatformSettings

DEAD_LETTER_TOPIC = DEAD_LETTER


def topic_name(settings: PlatformSettings, topic: str) -> str:
    """The topic's name on the cluster: the contract's name with the deployment's prefix."""
    return f"{settings.topic_prefix}{topic}"


def create_producer(settings: PlatformSettings, client_id: str) -> AIOKafkaProducer:
    """A producer that waits for every replica and, on real Kafka, deduplicates retries."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=settings.kafka_idempotent_producer,
        linger_ms=0,
        request_timeout_ms=10_000,
        retry_backoff_ms=100,
    )


async def ensure_topics(
    settings: PlatformSettings,
    topics: Iterable[str],
    partitions: int | None = None,
    replication_factor: int = 1,
    timeout: float = 30.0,
) -> None:
    """Create the topics that do not exist yet (names without prefix; the prefix is added)."""
    partitions = partitions or settings.kafka_topic_partitions
    wanted = {topic_name(settings, topic) for topic in topics}
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = sorted(wanted - existing)
            if missing:
                try:
                    await admin.create_topics(
                        [NewTopic(name, partitions, replication_factor) for name in missing]
                    )
                except TopicAlreadyExistsError:
                    pass
            return
        except KafkaError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)
        finally:
            await admin.close()
