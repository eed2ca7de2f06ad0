"""The history: every message on every topic, recorded once, and timelines that tell a
saga's story in time order under one correlation id."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from typing import Any

from bazaar.contracts import auth, catalog
from bazaar.contracts.topics import DEAD_LETTER
from bazaar.kit.messaging.envelope import new_envelope
from bazaar.kit.testing import wait_for
from bazaar.support.history import record_of
from bazaar.support.ingest import write_history
from tests.integration.support.conftest import SupportHarness
from tests.integration.support.flows import AuctionFlow, OrderFlow, Published, message


def types_of(items: list[dict[str, Any]]) -> list[str]:
    return [item["type"] for item in items]


def assert_in_time_order(items: list[dict[str, Any]]) -> None:
    times = [item["occurred_at"] for item in items]
    assert times == sorted(times)


async def timeline(support: SupportHarness, entity_id: object) -> dict[str, Any]:
    response = await support.get("/timeline", entity_id=str(entity_id))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_confirmed_orders_timeline_tells_its_saga_in_time_order(
    support: SupportHarness,
) -> None:
    flow = OrderFlow()
    published = flow.confirmed_flow()
    # Payments' topics are read by another partition than the order's: publish the
    # payment's messages first, so time order cannot come from arrival order.
    by_topic = sorted(published, key=lambda p: p.topic != "bazaar.payments")
    sent = await support.publish(by_topic)
    await support.wait_recorded(sent)

    body = await timeline(support, flow.order_id)

    items = body["items"]
    assert types_of(items) == [p.envelope.type for p in published]
    assert_in_time_order(items)
    assert {item["correlation_id"] for item in items} == {str(flow.order_id)}
    assert body["related_ids"] == [str(flow.payment_id)]
    first = items[0]
    assert first["entity_type"] == "order"
    assert first["entity_id"] == str(flow.order_id)
    assert first["user_id"] == str(flow.user_id)
    assert first["source"] == "bazaar/orders"
    assert first["trace_id"] == published[0].envelope.traceparent.split("-")[1]
    assert first["data"]["total"] == flow.total
    by_type = {item["type"]: item for item in items}
    assert by_type["bazaar.catalog.stock.reserved"]["entity_type"] == "stock_reservation"
    assert by_type["bazaar.payments.payment.succeeded"]["entity_id"] == str(flow.payment_id)
    assert by_type["bazaar.payments.command.charge"]["topic"] == "bazaar.payments.commands"


async def test_a_payments_timeline_holds_its_own_messages(support: SupportHarness) -> None:
    flow = OrderFlow()
    sent = await support.publish(flow.confirmed_flow())
    await support.wait_recorded(sent)

    items = (await timeline(support, flow.payment_id))["items"]

    # Its charge and its outcome (and, through the correlation id, nothing of other sagas).
    assert [item["type"] for item in items if item["entity_id"] == str(flow.payment_id)] == [
        "bazaar.payments.command.charge",
        "bazaar.payments.payment.succeeded",
    ]


async def test_a_declined_orders_timeline_ends_cancelled_after_its_failed_payment(
    support: SupportHarness,
) -> None:
    flow = OrderFlow()
    published = flow.declined_flow()
    sent = await support.publish(published)
    await support.wait_recorded(sent)

    items = (await timeline(support, flow.order_id))["items"]

    assert types_of(items) == [p.envelope.type for p in published]
    assert_in_time_order(items)
    assert items[-1]["type"] == "bazaar.orders.order.cancelled"
    assert items[-1]["data"]["reason"] == "payment_declined"
    failed = next(i for i in items if i["type"] == "bazaar.payments.payment.failed")
    assert failed["data"]["failure_code"] == "card_declined"


async def test_a_settled_auctions_timeline_shows_its_bids_close_and_both_payments(
    support: SupportHarness,
) -> None:
    flow = AuctionFlow()
    published = flow.settled_flow()
    sent = await support.publish(published)
    await support.wait_recorded(sent)

    body = await timeline(support, flow.auction_id)

    items = body["items"]
    assert types_of(items) == [p.envelope.type for p in published]
    assert_in_time_order(items)
    assert {item["correlation_id"] for item in items} == {str(flow.auction_id)}
    assert sorted(body["related_ids"]) == sorted(str(p) for p in flow.payments)
    bids = [i for i in items if i["type"] == "bazaar.auctions.bid.accepted"]
    assert [bid["data"]["amount"] for bid in bids] == [600, 800, 900]
    assert [bid["user_id"] for bid in bids] == [
        str(flow.bidders[1]),
        str(flow.bidders[0]),
        str(flow.bidders[1]),
    ]
    assert types_of(items)[-1] == "bazaar.auctions.auction.settled"


async def test_a_redelivered_message_is_recorded_once(support: SupportHarness) -> None:
    flow = OrderFlow()
    published = flow.confirmed_flow()
    sent = await support.publish(published)
    await support.wait_recorded(sent)

    # The relay sends again after a crash; then a marker after the copies on every
    # partition they went to (one per topic and key), to know all of them were read. Each
    # marker is another saga's message, so it is not counted with this order's below.
    await support.publish(published)
    partitions = dict.fromkeys((p.topic, p.key) for p in published)
    markers = await support.publish(
        replace(OrderFlow().created(), topic=topic, key=key) for topic, key in partitions
    )
    await support.wait_recorded(markers)

    assert await support.recorded(e.id for e in sent) == len(sent)
    count = await support.scalar(
        "SELECT count(*) FROM events WHERE correlation_id = :id", id=str(flow.order_id)
    )
    assert count == len(sent)
    items = (await timeline(support, flow.order_id))["items"]
    assert len(items) == len(sent)


async def test_every_topic_is_recorded_with_its_entity_and_user(support: SupportHarness) -> None:
    user_id, item_id, seller_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    registered = message(
        auth.UserRegistered(
            user_id=user_id,
            email="ann@example.com",
            display_name="Ann",
            roles=["customer"],
            created_at=OrderFlow().clock.start,
        ),
        source="bazaar.auth",
        key=str(user_id),
        at=OrderFlow().clock.start,
        correlation_id=None,
        user_id=None,
    )
    item = message(
        catalog.ItemCreated(
            item_id=item_id,
            seller_id=seller_id,
            kind="good",
            title="Kettle",
            price=1500,
            currency="USD",
            stock=3,
            active=True,
            updated_at=OrderFlow().clock.start,
        ),
        source="bazaar/catalog",
        key=str(item_id),
        at=OrderFlow().clock.start,
        correlation_id=None,
        user_id=None,
    )
    order = OrderFlow()
    original = order.created().envelope
    dead = new_envelope(
        source="bazaar/catalog",
        type="bazaar.platform.message.dead_lettered",
        subject=original.id,
        correlation_id=original.correlationid,
        data={
            "consumer": "catalog",
            "topic": "bazaar.orders",
            "partition": 0,
            "offset": 7,
            "error": "RuntimeError('boom')",
            "original": original.model_dump(mode="json"),
            "original_raw": None,
        },
    )
    sent = await support.publish([registered, item, Published(DEAD_LETTER, original.id, dead)])
    await support.publish_raw("bazaar.catalog.commands", b"\x00not json at all")
    await support.wait_recorded(sent)

    rows = {
        row["type"]: row for row in (await support.get("/operations", limit=100)).json()["items"]
    }
    assert rows["bazaar.auth.user.registered"]["entity_type"] == "user"
    assert rows["bazaar.auth.user.registered"]["user_id"] == str(user_id)
    assert rows["bazaar.catalog.item.created"]["entity_id"] == str(item_id)
    assert rows["bazaar.catalog.item.created"]["user_id"] == str(seller_id)
    dead_row = rows["bazaar.platform.message.dead_lettered"]
    # A dead letter is about its original message's entity, and its user.
    assert (dead_row["entity_type"], dead_row["entity_id"]) == ("order", str(order.order_id))
    assert dead_row["user_id"] == str(order.user_id)
    assert dead_row["topic"] == DEAD_LETTER

    async def unparsable_recorded() -> bool:
        return bool(
            await support.scalar(
                "SELECT count(*) FROM events WHERE type = 'bazaar.support.message.unparsable'"
            )
        )

    await wait_for(unparsable_recorded, message="the unparsable message in the history")


async def test_text_postgresql_refuses_is_cleaned_not_dropped(support: SupportHarness) -> None:
    flow = OrderFlow()
    created = flow.created()
    raw = created.envelope.model_dump(mode="json", exclude_none=True)
    raw["data"].update(note="nul\x00here", huge=2**70, nan=float("nan"))
    # orjson (which envelopes use) cannot even write such a number; the standard library can.
    await support.publish_raw(created.topic, json.dumps(raw).encode(), key=created.key)
    await support.wait_recorded([created.envelope])

    items = (await timeline(support, flow.order_id))["items"]
    assert items[0]["data"]["note"] == "nulhere"
    assert items[0]["data"]["huge"] == 2**70
    assert items[0]["data"]["nan"] is None


async def test_a_row_postgresql_refuses_is_kept_with_the_refusal(support: SupportHarness) -> None:
    good = record_of(OrderFlow().created().envelope, topic="bazaar.orders", partition=0, offset=1)
    refused = replace(
        record_of(OrderFlow().created().envelope, topic="bazaar.orders", partition=0, offset=2),
        data_json='{"note": "\\u0000"}',
    )

    new = await write_history(support.app.state.sessions, [good, refused])

    assert new == {good.id, refused.id}
    data = await support.scalar("SELECT data FROM events WHERE id = :id", id=refused.id)
    assert "unrecordable" in data
    progress = await support.scalar(
        "SELECT count(*) FROM entity_progress WHERE entity_id = :id", id=good.entity.id
    )
    assert progress == 1
