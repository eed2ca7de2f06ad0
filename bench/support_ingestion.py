"""How fast support's history takes in the platform's messages.

Starts a broker (tansu) and uses a fresh database on the given PostgreSQL server. Two
figures:

* **drain**: ``--events`` realistic saga messages (orders, stock, payments, auctions,
  spread over their topics) are put on the broker first; then the history ingester
  starts and the time until every one is visible gives events per second;
* **paced**: ``--rate`` events a second for ``--seconds`` while the ingester runs, and
  the event-to-visible lag (``recorded_at - occurred_at``) at p50 and p99.

    .venv/bin/python bench/support_ingestion.py [--events 20000] [--rate 2000] \\
        [--seconds 10] [--database-url postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bazaar.contracts.topics import ALL_TOPICS
from bazaar.kit.config import PlatformSettings
from bazaar.kit.db import (
    create_engine,
    create_session_factory,
    database_url,
    drop_database,
    ensure_database,
    migrate,
    migrations_dir,
)
from bazaar.kit.messaging.envelope import new_envelope
from bazaar.kit.messaging.kafka import ensure_topics, topic_name
from bazaar.stack.broker import EmbeddedBroker
from bazaar.support.ingest import HistoryIngester


def saga_messages() -> Iterator[tuple[str, str, bytes]]:
    """Endless (topic, key, envelope bytes): one order saga after another, stamped now."""
    while True:
        order_id, payment_id, user_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        now = datetime.now(UTC).isoformat()
        order = {
            "order_id": str(order_id),
            "user_id": str(user_id),
            "total": 2500,
            "currency": "USD",
            "occurred_at": now,
        }
        payment = {
            "payment_id": str(payment_id),
            "user_id": str(user_id),
            "amount": 2500,
            "currency": "USD",
            "reference_type": "order",
            "reference_id": str(order_id),
            "occurred_at": now,
        }
        steps = [
            (
                "bazaar.orders",
                order_id,
                "bazaar.orders.order.created",
                {
                    **order,
                    "status": "pending",
                    "lines": [
                        {
                            "item_id": str(uuid.uuid4()),
                            "title": "Teapot",
                            "unit_price": 2500,
                            "quantity": 1,
                        }
                    ],
                },
            ),
            (
                "bazaar.catalog.commands",
                order_id,
                "bazaar.catalog.command.reserve_stock",
                {"reservation_id": str(order_id), "lines": [], "hold_seconds": 900},
            ),
            (
                "bazaar.catalog",
                order_id,
                "bazaar.catalog.stock.reserved",
                {"reservation_id": str(order_id), "lines": [], "expires_at": now},
            ),
            (
                "bazaar.payments.commands",
                payment_id,
                "bazaar.payments.command.charge",
                {**payment, "payment_method_id": str(uuid.uuid4())},
            ),
            ("bazaar.payments", payment_id, "bazaar.payments.payment.succeeded", payment),
            (
                "bazaar.catalog",
                order_id,
                "bazaar.catalog.stock.committed",
                {"reservation_id": str(order_id)},
            ),
            (
                "bazaar.orders",
                order_id,
                "bazaar.orders.order.confirmed",
                {**order, "status": "confirmed", "payment_id": str(payment_id)},
            ),
        ]
        for topic, key, type_, data in steps:
            envelope = new_envelope(
                source="bench",
                type=type_,
                data=data,
                subject=str(key),
                correlation_id=str(order_id),
                user_id=user_id,
            )
            yield topic, str(key), envelope.to_bytes()


async def count(
    sessions: async_sessionmaker[AsyncSession], sql: str = "SELECT count(*) FROM events"
) -> int:
    async with sessions() as session:
        return int(await session.scalar(text(sql)))


async def wait_for_count(
    sessions: async_sessionmaker[AsyncSession], wanted: int, timeout: float = 300
) -> float:
    started = time.monotonic()
    while await count(sessions) < wanted:
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"fewer than {wanted} events after {timeout}s")
        await asyncio.sleep(0.02)
    return time.monotonic()


async def run(args: argparse.Namespace) -> None:
    broker = EmbeddedBroker()
    broker.start()
    name = f"bench_support_{uuid.uuid4().hex[:8]}"
    await ensure_database(args.database_url, name)
    url = database_url(args.database_url, name)
    engine = create_engine(url)
    try:
        await migrate(migrations_dir("bazaar.support"), url)
        sessions = create_session_factory(engine)
        platform = PlatformSettings(
            kafka_bootstrap_servers=broker.bootstrap_servers,
            topic_prefix=f"b{uuid.uuid4().hex[:6]}.",
            kafka_session_timeout_ms=2000,
            kafka_heartbeat_interval_ms=300,
        )
        await ensure_topics(platform, ALL_TOPICS)
        producer = AIOKafkaProducer(
            bootstrap_servers=broker.bootstrap_servers, acks="all", linger_ms=5
        )
        await producer.start()
        messages = saga_messages()
        # --- drain --------------------------------------------------------------------
        pending = []
        for _ in range(args.events):
            topic, key, value = next(messages)
            pending.append(
                await producer.send(topic_name(platform, topic), value=value, key=key.encode())
            )
        await asyncio.gather(*pending)
        ingester = HistoryIngester(
            sessions=sessions,
            platform=platform,
            group="support",
            batch_size=args.batch,
            poll_ms=100,
        )
        task = asyncio.create_task(ingester.run())
        await ingester.assigned.wait()
        started = time.monotonic()
        finished = await wait_for_count(sessions, args.events)
        drained = finished - started
        print(
            f"drain: {args.events} events in {drained:.2f}s = "
            f"{args.events / drained:.0f} events/s (batches of up to {args.batch})"
        )
        # --- paced --------------------------------------------------------------------
        tick = 0.05
        per_tick = int(args.rate * tick)
        ticks = int(args.seconds / tick)
        loop = asyncio.get_running_loop()
        begin = loop.time()
        pending = []
        for n in range(ticks):
            for _ in range(per_tick):
                topic, key, value = next(messages)
                pending.append(
                    await producer.send(topic_name(platform, topic), value=value, key=key.encode())
                )
            await asyncio.sleep(max(0.0, begin + (n + 1) * tick - loop.time()))
        await asyncio.gather(*pending)
        offered = per_tick * ticks
        await wait_for_count(sessions, args.events + offered)
        async with sessions() as session:
            p50, p99, worst = (
                await session.execute(
                    text(
                        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY lag),"
                        " percentile_cont(0.99) WITHIN GROUP (ORDER BY lag), max(lag) FROM ("
                        " SELECT extract(epoch FROM recorded_at - occurred_at) AS lag FROM events"
                        " ORDER BY recorded_at DESC LIMIT :n) AS l"
                    ),
                    {"n": offered},
                )
            ).one()
        print(
            f"paced: {offered} events at {args.rate}/s for {args.seconds}s: event-to-visible "
            f"lag p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {worst * 1000:.0f} ms"
        )
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await producer.stop()
    finally:
        await engine.dispose()
        await drop_database(args.database_url, name)
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
