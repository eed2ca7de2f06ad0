"""Ingestion keeps up: thousands of events a second, each visible within a second or two.

The figures are printed (``pytest -s``) for docs/benchmarks; the assertions are loose
enough for a busy 2-core CI machine and still catch a per-message design (which manages
a few hundred a second here).
"""

from __future__ import annotations

import asyncio
import time
import uuid

from bazaar.contracts import orders
from bazaar.kit.messaging.envelope import new_envelope
from bazaar.kit.messaging.kafka import topic_name
from bazaar.kit.testing import wait_for
from tests.integration.support.conftest import SupportHarness

TOPIC = "bazaar.orders"


def order_event(order_id: uuid.UUID, user_id: uuid.UUID) -> bytes:
    """An order saga step timing out: a realistic, mid-sized event, stamped now."""
    envelope = new_envelope(
        source="bazaar/orders",
        type=orders.OrderSagaStepTimedOut.TYPE,
        subject=str(order_id),
        correlation_id=str(order_id),
        user_id=user_id,
        data={
            "order_id": str(order_id),
            "user_id": str(user_id),
            "status": "pending",
            "total": 2500,
            "currency": "USD",
            "occurred_at": "2026-11-25T10:00:00Z",
            "step": "charging",
            "attempt": 2,
        },
    )
    return envelope.to_bytes()


async def lag_percentiles(support: SupportHarness) -> tuple[float, float]:
    row = await support.scalar(
        "SELECT ARRAY[percentile_cont(0.5) WITHIN GROUP (ORDER BY lag),"
        " percentile_cont(0.99) WITHIN GROUP (ORDER BY lag)]"
        " FROM (SELECT extract(epoch FROM recorded_at - occurred_at) AS lag FROM events) AS l"
    )
    return float(row[0]), float(row[1])


async def test_a_burst_of_5000_events_is_ingested_in_seconds(support: SupportHarness) -> None:
    count = 5000
    users = [uuid.uuid4() for _ in range(50)]
    topic = topic_name(support.platform, TOPIC)
    started = time.monotonic()
    pending = []
    for n in range(count):
        order_id = uuid.uuid4()
        pending.append(
            await support.producer.send(
                topic, value=order_event(order_id, users[n % 50]), key=str(order_id).encode()
            )
        )
    await asyncio.gather(*pending)
    produced = time.monotonic() - started

    async def all_visible() -> bool:
        return bool(await support.scalar("SELECT count(*) FROM events") == count)

    await wait_for(all_visible, timeout=60, interval=0.05, message=f"{count} events")
    elapsed = time.monotonic() - started
    p50, p99 = await lag_percentiles(support)
    print(
        f"\nsupport ingestion, burst: {count} events produced in {produced:.2f}s, all visible "
        f"after {elapsed:.2f}s ({count / elapsed:.0f} events/s end to end); "
        f"event-to-visible lag p50 {p50:.3f}s p99 {p99:.3f}s"
    )
    assert elapsed < 30


async def test_at_2000_events_a_second_each_is_visible_within_2_seconds(
    support: SupportHarness,
) -> None:
    rate, seconds, tick = 2000, 5, 0.05
    per_tick = int(rate * tick)
    topic = topic_name(support.platform, TOPIC)
    user = uuid.uuid4()
    loop = asyncio.get_running_loop()
    started = loop.time()
    pending = []
    for n in range(int(seconds / tick)):
        for _ in range(per_tick):
            order_id = uuid.uuid4()
            pending.append(
                await support.producer.send(
                    topic, value=order_event(order_id, user), key=str(order_id).encode()
                )
            )
        # Pacing the load, not waiting for a result: the next tick's messages leave then.
        await asyncio.sleep(max(0.0, started + (n + 1) * tick - loop.time()))
    await asyncio.gather(*pending)
    produced_in = loop.time() - started
    total = per_tick * int(seconds / tick)

    async def all_visible() -> bool:
        return bool(await support.scalar("SELECT count(*) FROM events") == total)

    await wait_for(all_visible, timeout=60, interval=0.05, message=f"{total} events")
    p50, p99 = await lag_percentiles(support)
    print(
        f"\nsupport ingestion, paced: {total} events over {produced_in:.2f}s "
        f"({total / produced_in:.0f}/s offered); event-to-visible lag p50 {p50:.3f}s "
        f"p99 {p99:.3f}s"
    )
    assert p99 < 2.0
