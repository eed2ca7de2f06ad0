"""``bazaar support replay``: an emptied history rebuilt from the topics is the same history."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from typing import Any

from sqlalchemy import text

from bazaar.kit.messaging.envelope import new_envelope
from bazaar.kit.testing import wait_for
from bazaar.support.replay import replay_history
from tests.integration.support.conftest import SUPPORT, SupportHarness
from tests.integration.support.flows import AuctionFlow, OrderFlow, Published

SNAPSHOT_QUERIES = {
    # recorded_at is when a row was written, the one thing a rebuild changes.
    "events": "SELECT id, type, source, topic, kafka_partition, kafka_offset, subject,"
    " entity_type, entity_id, user_id, correlation_id, trace_id, occurred_at, data"
    " FROM events ORDER BY id",
    "links": "SELECT * FROM entity_links ORDER BY parent_id, child_id",
    "progress": "SELECT * FROM entity_progress ORDER BY entity_type, entity_id",
    "actions": "SELECT * FROM support_actions ORDER BY id",
}


async def snapshot(support: SupportHarness) -> dict[str, list[tuple[Any, ...]]]:
    async with support.app.state.sessions() as session:
        return {
            name: [tuple(row) for row in await session.execute(text(query))]
            for name, query in SNAPSHOT_QUERIES.items()
        }


async def a_busy_history(support: SupportHarness) -> None:
    """Sagas of every kind, a redelivery, a dead letter, garbage, and a support action."""
    order, declined, auction = OrderFlow(), OrderFlow(), AuctionFlow()
    flows = [*order.confirmed_flow(), *declined.declined_flow(), *auction.settled_flow()]
    original = flows[0].envelope
    dead = new_envelope(
        source="bazaar/catalog",
        type="bazaar.platform.message.dead_lettered",
        subject=original.id,
        data={"consumer": "catalog", "error": "boom", "original": original.model_dump(mode="json")},
    )
    sent = await support.publish([*flows, Published("bazaar.dead-letter", "k", dead)])
    await support.publish(flows[:5])
    await support.publish_raw("bazaar.auctions", b"{ not an envelope")
    response = await support.client.post(
        f"{SUPPORT}/actions",
        json={"action": "refund_payment", "target_id": str(order.payment_id), "reason": "r"},
        headers=support.headers(),
    )
    action_id = response.json()["id"]
    await support.wait_recorded(sent)

    async def all_in() -> bool:
        done = await support.scalar(
            "SELECT count(*) FROM events WHERE data ->> 'action_id' = :id", id=action_id
        )
        garbage = await support.scalar(
            "SELECT count(*) FROM events WHERE type = 'bazaar.support.message.unparsable'"
        )
        return bool(done == 2 and garbage == 1)

    await wait_for(all_in, timeout=15, message="the action's events and the garbage")


async def test_a_replay_rebuilds_an_identical_history(support: SupportHarness) -> None:
    await a_busy_history(support)
    before = await snapshot(support)
    # Something the topics do not hold: a replay must not keep it.
    async with support.app.state.sessions() as session, session.begin():
        await session.execute(
            text(
                "INSERT INTO events (id, type, source, topic, kafka_partition, kafka_offset,"
                " occurred_at, data) VALUES ('stray', 't', 's', 'x', 0, 0, now(), '{}')"
            )
        )

    result = await replay_history(support.app.state.sessions, support.platform)

    assert result.recorded == len(before["events"])
    assert result.read > result.recorded  # the redelivered ones were read, not recorded
    after = await snapshot(support)
    assert after == before
    assert len(before["events"]) > 30 and before["links"] and before["progress"]


async def test_the_replay_command_rebuilds_the_history(support: SupportHarness) -> None:
    await a_busy_history(support)
    before = await snapshot(support)
    async with support.app.state.sessions() as session, session.begin():
        await session.execute(text("TRUNCATE events, entity_links, entity_progress"))
    env = {
        **os.environ,
        "BAZAAR_SUPPORT_DATABASE_URL": support.settings.database_url.get_secret_value(),
        "BAZAAR_KAFKA_BOOTSTRAP_SERVERS": support.platform.kafka_bootstrap_servers,
        "BAZAAR_TOPIC_PREFIX": support.platform.topic_prefix,
        "BAZAAR_SUPPORT_CONSUMER_GROUP": f"support-cli-{uuid.uuid4().hex[:6]}",
    }

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bazaar",
        "support",
        "replay",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=120)

    assert process.returncode == 0, stderr.decode()
    assert "history rebuilt" in stderr.decode()
    assert await snapshot(support) == before
