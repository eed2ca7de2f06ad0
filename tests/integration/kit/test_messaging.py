"""The outbox, relay, consumer and inbox together, against PostgreSQL and a real broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.kit import tables
from bazaar.kit.config import PlatformSettings
from bazaar.kit.db import (
    transaction,
)
from bazaar.kit.messaging import outbox
from bazaar.kit.messaging.consumer import DEAD_LETTERED_TYPE, MessageConsumer
from bazaar.kit.messaging.envelope import Envelope, new_envelope
from bazaar.kit.messaging.kafka import DEAD_LETTER_TOPIC, ensure_topics, topic_name
from bazaar.kit.messaging.relay import OutboxRelay
from bazaar.kit.testing import read_topic, wait_for
from bazaar.stack.broker import EmbeddedBroker
from tests.integration.kit.conftest import ServiceDatabase, committed_total, effects

TOPIC = "bazaar.kit-test"
PING = "bazaar.kit-test.ping"
BROKEN = "bazaar.kit-test.broken"


async def count_effect(session: AsyncSession, envelope: Envelope) -> None:
    """A handler whose effect shows how often it ran for one message."""
    await session.execute(
        insert(effects)
        .values(message_id=envelope.id, times=1)
        .on_conflict_do_update(index_elements=["message_id"], set_={"times": effects.c.times + 1})
    )


async def always_fails(session: AsyncSession, envelope: Envelope) -> None:
    raise RuntimeError("this handler never succeeds")


async def effect_times(db: ServiceDatabase, message_id: str) -> int:
    async with db.sessions() as session:
        times = await session.scalar(
            select(effects.c.times).where(effects.c.message_id == message_id)
        )
    return times or 0


def consumer_for(db: ServiceDatabase, platform: PlatformSettings) -> MessageConsumer:
    return MessageConsumer(
        name="kit-test",
        topics=[TOPIC],
        handlers={PING: count_effect, BROKEN: always_fails},
        sessions=db.sessions,
        settings=platform,
        source="bazaar/kit-test",
        max_attempts=3,
        first_backoff_seconds=0.01,
    )


async def commit_event(db: ServiceDatabase, type_: str = PING) -> Envelope:
    envelope = new_envelope(source="bazaar/kit-test", type=type_, data={"n": 1}, subject="e1")
    async with transaction(db.sessions) as session:
        await outbox.publish(session, TOPIC, envelope, key="e1")
    return envelope


async def outbox_rows(db: ServiceDatabase) -> int:
    async with db.sessions() as session:
        return len((await session.execute(select(tables.outbox.c.id))).all())


@pytest.fixture
async def own_broker() -> AsyncIterator[EmbeddedBroker]:
    """A broker of this test's own, so stopping it disturbs no other test."""
    broker = EmbeddedBroker()
    await asyncio.to_thread(broker.start)
    try:
        yield broker
    finally:
        await asyncio.to_thread(broker.stop)


async def test_event_committed_while_broker_down_arrives_once_it_is_back(
    service_db: ServiceDatabase, own_broker: EmbeddedBroker, platform_settings: PlatformSettings
) -> None:
    platform = platform_settings.model_copy(
        update={"kafka_bootstrap_servers": own_broker.bootstrap_servers}
    )
    await ensure_topics(platform, [TOPIC, DEAD_LETTER_TOPIC])
    relay = OutboxRelay(service="kit-test", database_url=service_db.url, settings=platform)
    consumer = consumer_for(service_db, platform)
    tasks = [asyncio.create_task(relay.run()), asyncio.create_task(consumer.run())]
    try:
        await wait_for(consumer.assigned.is_set, timeout=20, message="consumer assignment")
        await asyncio.to_thread(own_broker.stop)

        envelope = await commit_event(service_db)
        # The row stays in the outbox while there is no broker to take it.
        assert await outbox_rows(service_db) == 1

        await asyncio.to_thread(own_broker.start)
        await wait_for(
            lambda: effect_times(service_db, envelope.id), timeout=60, message="the effect"
        )
        await wait_for(lambda: _is_zero(outbox_rows(service_db)), message="an empty outbox")
        assert await effect_times(service_db, envelope.id) == 1
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _is_zero(count: asyncio.Future[int] | object) -> bool:
    return await count == 0  # type: ignore[misc]


async def test_redelivered_messages_change_nothing(
    service_db: ServiceDatabase, platform_settings: PlatformSettings
) -> None:
    """The same message delivered three times (a producer retry, a rebalance) has one effect."""
    await ensure_topics(platform_settings, [TOPIC, DEAD_LETTER_TOPIC])
    envelope = new_envelope(source="bazaar/kit-test", type=PING, data={}, subject="e2")
    producer = AIOKafkaProducer(bootstrap_servers=platform_settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for _ in range(3):
            await producer.send_and_wait(topic_name(platform_settings, TOPIC), envelope.to_bytes())
    finally:
        await producer.stop()

    consumer = consumer_for(service_db, platform_settings)
    task = asyncio.create_task(consumer.run())
    try:
        await wait_for(lambda: effect_times(service_db, envelope.id), timeout=20, message="effect")
        events = await read_topic(platform_settings, TOPIC, until=lambda seen: len(seen) >= 3)
        assert [event.id for event in events] == [envelope.id] * 3
        # Until the consumer committed the offsets of all three copies: it has handled
        # them all, so a wrong extra effect of a repeat would be counted below.
        await wait_for(
            lambda: committed_total(platform_settings, consumer.name, TOPIC, 3),
            timeout=30,
            message="the offsets of the three copies committed",
        )
        assert await effect_times(service_db, envelope.id) == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_message_that_keeps_failing_goes_to_the_dead_letter_topic(
    service_db: ServiceDatabase, platform_settings: PlatformSettings
) -> None:
    await ensure_topics(platform_settings, [TOPIC, DEAD_LETTER_TOPIC])
    relay = OutboxRelay(service="kit-test", database_url=service_db.url, settings=platform_settings)
    consumer = consumer_for(service_db, platform_settings)
    tasks = [asyncio.create_task(relay.run()), asyncio.create_task(consumer.run())]
    try:
        broken = await commit_event(service_db, BROKEN)
        after = await commit_event(service_db, PING)
        dead = await read_topic(
            platform_settings, DEAD_LETTER_TOPIC, until=lambda seen: len(seen) >= 1, timeout=30
        )
        assert dead[0].type == DEAD_LETTERED_TYPE
        assert dead[0].subject == broken.id
        assert dead[0].data["consumer"] == "kit-test"
        assert "never succeeds" in dead[0].data["error"]
        assert dead[0].data["original"]["id"] == broken.id
        # The partition moved on: the message after the poison one was handled.
        await wait_for(
            lambda: effect_times(service_db, after.id), timeout=20, message="next message"
        )
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_garbage_on_a_topic_is_dead_lettered_not_fatal(
    service_db: ServiceDatabase, platform_settings: PlatformSettings
) -> None:
    await ensure_topics(platform_settings, [TOPIC, DEAD_LETTER_TOPIC])
    producer = AIOKafkaProducer(bootstrap_servers=platform_settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(topic_name(platform_settings, TOPIC), b"{not json")
    finally:
        await producer.stop()
    relay = OutboxRelay(service="kit-test", database_url=service_db.url, settings=platform_settings)
    consumer = consumer_for(service_db, platform_settings)
    tasks = [asyncio.create_task(relay.run()), asyncio.create_task(consumer.run())]
    try:
        dead = await read_topic(
            platform_settings, DEAD_LETTER_TOPIC, until=lambda seen: len(seen) >= 1
        )
        assert dead[0].data["original_raw"] is not None
        follow_up = await commit_event(service_db, PING)
        await wait_for(lambda: effect_times(service_db, follow_up.id), timeout=20, message="effect")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_only_one_relay_per_database_publishes(
    service_db: ServiceDatabase, platform_settings: PlatformSettings
) -> None:
    """Two replicas' relays: one leads, so one entity's messages leave in commit order."""
    await ensure_topics(platform_settings, [TOPIC])
    relays = [
        OutboxRelay(service="kit-test", database_url=service_db.url, settings=platform_settings)
        for _ in range(2)
    ]
    tasks = [asyncio.create_task(relay.run()) for relay in relays]
    try:
        await wait_for(lambda: any(relay.is_leader for relay in relays), message="a leader")
        assert sum(relay.is_leader for relay in relays) == 1
        sent = [await commit_event(service_db) for _ in range(20)]
        events = await read_topic(platform_settings, TOPIC, until=lambda seen: len(seen) >= 20)
        assert [event.id for event in events] == [envelope.id for envelope in sent]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_relay_stopped_after_sending_leaves_nothing_to_send_again(
    service_db: ServiceDatabase, platform_settings: PlatformSettings
) -> None:
    """Acknowledged rows are deleted with the relay's next read, or when it stops: a new
    leader does not send them again."""
    await ensure_topics(platform_settings, [TOPIC])

    def published() -> float:
        labels = {"topic": TOPIC}
        return REGISTRY.get_sample_value("bazaar_outbox_published_total", labels) or 0.0

    before = published()
    relay = OutboxRelay(service="kit-test", database_url=service_db.url, settings=platform_settings)
    task = asyncio.create_task(relay.run())
    try:
        await commit_event(service_db)
        # Counted once the broker acknowledged it, in the step that marks it as sent.
        await wait_for(lambda: published() > before, message="the broker's acknowledgement")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert await outbox_rows(service_db) == 0


async def test_messages_published_together_leave_in_the_order_given(
    service_db: ServiceDatabase, platform_settings: PlatformSettings
) -> None:
    await ensure_topics(platform_settings, [TOPIC])
    envelopes = [
        new_envelope(source="bazaar/kit-test", type=PING, data={"n": n}, subject="e1")
        for n in range(3)
    ]
    async with transaction(service_db.sessions) as session:
        await outbox.publish_all(session, [(TOPIC, envelope, "e1") for envelope in envelopes])
    async with service_db.sessions() as session:
        rows = (
            await session.execute(
                select(tables.outbox.c.message_id, tables.outbox.c.key).order_by(tables.outbox.c.id)
            )
        ).all()
    assert [tuple(row) for row in rows] == [(envelope.id, "e1") for envelope in envelopes]

    relay = OutboxRelay(service="kit-test", database_url=service_db.url, settings=platform_settings)
    task = asyncio.create_task(relay.run())
    try:
        seen = await read_topic(
            platform_settings, TOPIC, until=lambda seen: len(seen) >= 3, timeout=30
        )
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert [envelope.id for envelope in seen] == [envelope.id for envelope in envelopes]
    assert [envelope.data for envelope in seen] == [{"n": 0}, {"n": 1}, {"n": 2}]
