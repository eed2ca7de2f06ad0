"""The consumer handles what one fetch brings in one transaction, and still gives every
message exactly one effect, in its partition's order, with the per-message retries and
dead-lettering for one that keeps failing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.kit.config import PlatformSettings
from bazaar.kit.messaging.consumer import DEAD_LETTERED_TYPE, MessageConsumer, OffsetCommits
from bazaar.kit.messaging.envelope import Envelope, new_envelope
from bazaar.kit.messaging.kafka import DEAD_LETTER_TOPIC, ensure_topics, topic_name
from bazaar.kit.messaging.relay import OutboxRelay
from bazaar.kit.testing import read_topic, wait_for
from tests.integration.kit.conftest import ServiceDatabase, committed_total

TOPIC = "bazaar.kit-batch-test"
PING = "bazaar.kit-batch-test.ping"
BROKEN = "bazaar.kit-batch-test.broken"
KEY = b"one-entity"


@pytest.fixture
async def journal(service_db: ServiceDatabase) -> ServiceDatabase:
    """A table where the handler writes each message it handles, in handling order, with
    the transaction that handled it."""
    async with service_db.engine.begin() as conn:
        await conn.execute(
            text(
                "CREATE TABLE journal (seq bigserial PRIMARY KEY, message_id text NOT NULL, "
                "n integer NOT NULL, txid bigint NOT NULL DEFAULT txid_current())"
            )
        )
    return service_db


async def write_journal(session: AsyncSession, envelope: Envelope) -> None:
    await session.execute(
        text("INSERT INTO journal (message_id, n) VALUES (:id, :n)"),
        {"id": envelope.id, "n": envelope.data["n"]},
    )


async def break_down(session: AsyncSession, envelope: Envelope) -> None:
    # Something written first, so that the rollback has something to undo.
    await write_journal(session, envelope)
    raise RuntimeError("this handler never succeeds")


def consumer_for(
    db: ServiceDatabase, platform: PlatformSettings, **options: Any
) -> MessageConsumer:
    """The consumer under test; ``options`` override its handlers and settings."""
    settings: dict[str, Any] = {
        "handlers": {PING: write_journal, BROKEN: break_down},
        "max_attempts": 2,
        "first_backoff_seconds": 0.01,
        **options,
    }
    return MessageConsumer(
        name="kit-batch-test",
        topics=[TOPIC],
        sessions=db.sessions,
        settings=platform,
        source="bazaar/kit-batch-test",
        **settings,
    )


def envelope(n: int, type_: str = PING) -> Envelope:
    return new_envelope(source="bazaar/kit-batch-test", type=type_, data={"n": n}, subject="e")


async def put_on_topic(platform: PlatformSettings, values: Sequence[bytes]) -> None:
    """Everything on the topic before the consumer starts: its first fetch gets it all."""
    await ensure_topics(platform, [TOPIC, DEAD_LETTER_TOPIC])
    producer = AIOKafkaProducer(bootstrap_servers=platform.kafka_bootstrap_servers)
    await producer.start()
    try:
        for value in values:
            await producer.send(topic_name(platform, TOPIC), value, key=KEY)
        await producer.flush()
    finally:
        await producer.stop()


async def journal_rows(db: ServiceDatabase) -> list[tuple[str, int, int]]:
    async with db.sessions() as session:
        rows = await session.execute(text("SELECT message_id, n, txid FROM journal ORDER BY seq"))
        return [(row.message_id, row.n, row.txid) for row in rows]


@asynccontextmanager
async def consuming(
    db: ServiceDatabase, platform: PlatformSettings, consumer: MessageConsumer
) -> AsyncIterator[None]:
    """``consumer`` and the outbox relay (for dead letters) running for the block."""
    relay = OutboxRelay(service="kit-batch-test", database_url=db.url, settings=platform)
    tasks = [asyncio.create_task(consumer.run()), asyncio.create_task(relay.run())]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_messages_fetched_together_are_handled_in_one_transaction_in_order(
    journal: ServiceDatabase, platform_settings: PlatformSettings
) -> None:
    sent = [envelope(n) for n in range(20)]
    await put_on_topic(platform_settings, [e.to_bytes() for e in sent])
    async with consuming(journal, platform_settings, consumer_for(journal, platform_settings)):
        await wait_for(lambda: _has_rows(journal, 20), timeout=30, message="every message handled")
        rows = await journal_rows(journal)
        assert [n for _, n, _ in rows] == list(range(20))
        assert [message_id for message_id, _, _ in rows] == [e.id for e in sent]
        # Fetched at once, so handled in fewer transactions than messages.
        assert len({txid for _, _, txid in rows}) < 20


async def test_repeats_within_a_batch_and_of_handled_messages_have_one_effect(
    journal: ServiceDatabase, platform_settings: PlatformSettings
) -> None:
    first, second = envelope(1), envelope(2)
    consumer = consumer_for(journal, platform_settings)
    await put_on_topic(platform_settings, [first.to_bytes()] * 3)
    async with consuming(journal, platform_settings, consumer):
        await wait_for(lambda: _has_rows(journal, 1), timeout=30, message="the first message")
        # Redelivered later, next to a new message, in one batch.
        await put_on_topic(
            platform_settings, [first.to_bytes(), second.to_bytes(), second.to_bytes()]
        )
        await wait_for(lambda: _has_rows(journal, 2), timeout=30, message="the second message")
        await _caught_up(platform_settings, consumer, 6)
        assert [n for _, n, _ in await journal_rows(journal)] == [1, 2]


async def test_a_failing_message_inside_a_batch_is_dead_lettered_and_the_rest_handled_once(
    journal: ServiceDatabase, platform_settings: PlatformSettings
) -> None:
    before = [envelope(n) for n in range(5)]
    broken = envelope(5, BROKEN)
    after = [envelope(n) for n in range(6, 11)]
    await put_on_topic(platform_settings, [e.to_bytes() for e in (*before, broken, *after)])
    consumer = consumer_for(journal, platform_settings)
    async with consuming(journal, platform_settings, consumer):
        dead = await read_topic(
            platform_settings, DEAD_LETTER_TOPIC, until=lambda seen: len(seen) >= 1, timeout=30
        )
        assert dead[0].type == DEAD_LETTERED_TYPE
        assert dead[0].subject == broken.id
        assert "never succeeds" in dead[0].data["error"]
        await wait_for(lambda: _has_rows(journal, 10), timeout=30, message="the rest handled")
        await _caught_up(platform_settings, consumer, 11)
        rows = await journal_rows(journal)
        # The batch before the failing message was rolled back and handled again, the
        # failing one's writes never committed, and the partition's order held.
        assert [n for _, n, _ in rows] == [*range(5), *range(6, 11)]


async def test_an_unparsable_record_inside_a_batch_is_dead_lettered_not_fatal(
    journal: ServiceDatabase, platform_settings: PlatformSettings
) -> None:
    sent = [envelope(1), envelope(2)]
    await put_on_topic(platform_settings, [sent[0].to_bytes(), b"{not json", sent[1].to_bytes()])
    async with consuming(journal, platform_settings, consumer_for(journal, platform_settings)):
        dead = await read_topic(
            platform_settings, DEAD_LETTER_TOPIC, until=lambda seen: len(seen) >= 1, timeout=30
        )
        assert dead[0].data["original_raw"] is not None
        await wait_for(lambda: _has_rows(journal, 2), timeout=30, message="both handled")
        assert [n for _, n, _ in await journal_rows(journal)] == [1, 2]


async def test_offsets_of_handled_messages_are_committed(
    journal: ServiceDatabase, platform_settings: PlatformSettings
) -> None:
    await put_on_topic(platform_settings, [envelope(n).to_bytes() for n in range(5)])
    consumer = consumer_for(journal, platform_settings)
    async with consuming(journal, platform_settings, consumer):
        await wait_for(lambda: _has_rows(journal, 5), timeout=30, message="every message")
        await _caught_up(platform_settings, consumer, 5)


async def test_offsets_are_committed_once_an_interval_while_messages_keep_coming(
    platform_settings: PlatformSettings,
) -> None:
    """A commit per fetch would be a broker request per message under a steady stream: the
    first handled offsets go at once, later ones wait for the interval, unless the
    consumer's next fetch came back empty (then at once)."""
    await put_on_topic(platform_settings, [envelope(n).to_bytes() for n in range(3)])
    group = "kit-offset-pacing"
    consumer = AIOKafkaConsumer(
        topic_name(platform_settings, TOPIC),
        bootstrap_servers=platform_settings.kafka_bootstrap_servers,
        group_id=f"{platform_settings.topic_prefix}{group}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        records: list[ConsumerRecord[bytes, bytes]] = []

        async def fetched_all() -> bool:
            batch = await consumer.getmany(timeout_ms=200)
            records.extend(record for part in batch.values() for record in part)
            return len(records) >= 3

        await wait_for(fetched_all, timeout=30, message="the three records fetched")
        partition = TopicPartition(records[0].topic, records[0].partition)
        commits = OffsetCommits(consumer, group, interval=3600)

        commits.handled(partition, records[0].offset + 1)
        assert commits.commit_handled()
        await wait_for(
            lambda: committed_total(platform_settings, group, TOPIC, 1),
            timeout=30,
            message="the first offset committed",
        )
        await wait_for(lambda: not commits.committing, message="the first commit answered")
        commits.handled(partition, records[1].offset + 1)
        assert not commits.commit_handled()  # within the interval: held back
        commits.handled(partition, records[2].offset + 1)
        assert commits.commit_handled(idle=True)  # nothing more came: at once
        await wait_for(
            lambda: committed_total(platform_settings, group, TOPIC, 3),
            timeout=30,
            message="all three offsets committed",
        )
    finally:
        await consumer.stop()


async def _has_rows(db: ServiceDatabase, wanted: int) -> bool:
    return len(await journal_rows(db)) >= wanted


async def _caught_up(platform: PlatformSettings, consumer: MessageConsumer, sent: int) -> None:
    """Until the consumer committed the offsets of all ``sent`` records: it has handled
    them all (a wrong extra effect of a repeat would be in the journal by then)."""
    await wait_for(
        lambda: committed_total(platform, consumer.name, TOPIC, sent),
        timeout=30,
        message=f"the offsets of {sent} records committed",
    )


async def test_partitions_handled_side_by_side_keep_each_partitions_order(
    journal: ServiceDatabase, platform_settings: PlatformSettings
) -> None:
    await ensure_topics(platform_settings, [TOPIC, DEAD_LETTER_TOPIC])
    entities = [f"entity-{number}".encode() for number in range(8)]
    sent: dict[bytes, list[Envelope]] = {entity: [] for entity in entities}
    producer = AIOKafkaProducer(bootstrap_servers=platform_settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for n in range(40):
            entity = entities[n % len(entities)]
            message = envelope(n)
            sent[entity].append(message)
            await producer.send(
                topic_name(platform_settings, TOPIC), message.to_bytes(), key=entity
            )
        await producer.flush()
    finally:
        await producer.stop()
    consumer = consumer_for(
        journal,
        platform_settings,
        handlers={PING: write_journal},
        concurrent_partitions=True,
    )
    async with consuming(journal, platform_settings, consumer):
        await wait_for(lambda: _has_rows(journal, 40), timeout=30, message="every message")
        await _caught_up(platform_settings, consumer, 40)
        handled = [message_id for message_id, _, _ in await journal_rows(journal)]
        assert sorted(handled) == sorted(e.id for messages in sent.values() for e in messages)
        for messages in sent.values():
            ids = [e.id for e in messages]
            assert [message_id for message_id in handled if message_id in ids] == ids


async def test_one_message_a_transaction_when_asked(
    journal: ServiceDatabase, platform_settings: PlatformSettings
) -> None:
    await put_on_topic(platform_settings, [envelope(n).to_bytes() for n in range(10)])
    consumer = consumer_for(
        journal,
        platform_settings,
        handlers={PING: write_journal},
        max_batch_messages=1,
        concurrent_partitions=True,
    )
    async with consuming(journal, platform_settings, consumer):
        await wait_for(lambda: _has_rows(journal, 10), timeout=30, message="every message")
        rows = await journal_rows(journal)
        assert [n for _, n, _ in rows] == list(range(10))
        assert len({txid for _, _, txid in rows}) == 10


async def test_messages_the_consumer_does_not_accept_are_passed_over_without_a_trace(
    journal: ServiceDatabase, platform_settings: PlatformSettings
) -> None:
    """Odd numbers are another consumer's: no effect, no inbox row, and still committed."""
    sent = [envelope(n) for n in range(6)]
    await put_on_topic(platform_settings, [e.to_bytes() for e in sent])
    consumer = consumer_for(
        journal,
        platform_settings,
        handlers={PING: write_journal},
        accepts=lambda e: e.data["n"] % 2 == 0,
    )
    async with consuming(journal, platform_settings, consumer):
        await _caught_up(platform_settings, consumer, 6)
        assert [n for _, n, _ in await journal_rows(journal)] == [0, 2, 4]
        async with journal.sessions() as session:
            claimed = set((await session.execute(text("SELECT message_id FROM inbox"))).scalars())
        assert claimed == {e.id for e in sent if e.data["n"] % 2 == 0}
