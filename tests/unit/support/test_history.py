"""What a message becomes in the history: entity, user, links, saga progress."""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import UTC, datetime, timedelta
from functools import reduce
from typing import Any

import orjson
from aiokafka import ConsumerRecord

from bazaar.kit.config import PlatformSettings
from bazaar.kit.messaging.envelope import Envelope, new_envelope
from bazaar.support.history import (
    EntityRef,
    Link,
    json_text,
    merge_progress,
    progress_by_entity,
    record_of,
    unparsable_record,
)
from bazaar.support.ingest import history_records

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def envelope(type_: str, data: dict[str, Any], *, at: datetime = T0, **extra: Any) -> Envelope:
    made = new_envelope(source="bazaar/test", type=type_, data=data, **extra)
    return made.model_copy(update={"time": at})


def record(type_: str, data: dict[str, Any], **extra: Any) -> Any:
    return record_of(envelope(type_, data, **extra), topic="bazaar.x", partition=1, offset=9)


def test_an_order_event_is_about_its_order_and_user() -> None:
    order_id, user_id = str(uuid.uuid4()), str(uuid.uuid4())
    row = record(
        "bazaar.orders.order.created",
        {"order_id": order_id, "user_id": user_id, "total": 1},
        correlation_id=order_id,
    )

    assert row.entity == EntityRef("order", order_id)
    assert row.user_id == user_id
    assert row.correlation_id == order_id
    assert row.trace_id is not None and len(row.trace_id) == 32
    assert (row.topic, row.partition, row.offset) == ("bazaar.x", 1, 9)
    assert row.progress is not None and row.progress.started_at == T0


def test_the_envelopes_user_comes_before_the_datas() -> None:
    row = record(
        "bazaar.auctions.bid.accepted",
        {"auction_id": "a1", "seller_id": "seller", "bidder_id": "bidder"},
        user_id="from-envelope",
    )
    assert row.user_id == "from-envelope"
    assert (
        record("bazaar.auctions.bid.accepted", {"auction_id": "a1", "bidder_id": "b"}).user_id
        == "b"
    )


def test_entities_by_kind_of_message() -> None:
    cases = {
        "bazaar.payments.payment.succeeded": ({"payment_id": "p"}, EntityRef("payment", "p")),
        "bazaar.payments.command.charge": ({"payment_id": "p"}, EntityRef("payment", "p")),
        "bazaar.auctions.settlement.attempted": ({"auction_id": "a"}, EntityRef("auction", "a")),
        "bazaar.catalog.stock.reserved": (
            {"reservation_id": "o"},
            EntityRef("stock_reservation", "o"),
        ),
        "bazaar.catalog.command.release_stock": (
            {"reservation_id": "o"},
            EntityRef("stock_reservation", "o"),
        ),
        "bazaar.catalog.item.created": ({"item_id": "i"}, EntityRef("item", "i")),
        "bazaar.auth.user.registered": ({"user_id": "u"}, EntityRef("user", "u")),
        "bazaar.support.action.requested": (
            {"target_type": "order", "target_id": "o"},
            EntityRef("order", "o"),
        ),
        "bazaar.somebody.new.thing": ({"thing_id": "t"}, None),
        "bazaar.orders.order.created": ({"order_id": {"not": "an id"}}, None),
    }
    for type_, (data, entity) in cases.items():
        assert record(type_, data).entity == entity, type_


def test_payments_link_to_what_they_pay_for() -> None:
    charge = record(
        "bazaar.payments.command.charge",
        {"payment_id": "p", "reference_type": "order", "reference_id": "o"},
    )
    confirmed = record("bazaar.orders.order.confirmed", {"order_id": "o", "payment_id": "p"})
    settled = record("bazaar.auctions.auction.settled", {"auction_id": "a", "payment_id": "q"})
    odd = record(
        "bazaar.payments.payment.failed",
        {"payment_id": "p", "reference_type": "invoice", "reference_id": "i"},
    )

    order_pays = Link(EntityRef("order", "o"), EntityRef("payment", "p"))
    assert charge.links == (order_pays,)
    assert confirmed.links == (order_pays,)
    assert settled.links == (Link(EntityRef("auction", "a"), EntityRef("payment", "q")),)
    assert odd.links == ()


def test_a_dead_letter_is_about_its_original_message() -> None:
    original = envelope(
        "bazaar.payments.command.charge",
        {"payment_id": "p", "reference_type": "order", "reference_id": "o"},
        user_id="u",
    )
    dead = record(
        "bazaar.platform.message.dead_lettered",
        {"consumer": "payments", "original": original.model_dump(mode="json")},
    )
    unparsable = record(
        "bazaar.platform.message.dead_lettered",
        {"consumer": "payments", "original": None, "original_raw": "AAAA"},
        subject="bazaar.payments.commands:2:17",
    )

    assert dead.entity == EntityRef("payment", "p")
    assert dead.user_id == "u"
    assert dead.links == () and dead.progress is None
    assert unparsable.entity == EntityRef("message", "bazaar.payments.commands:2:17")


def test_something_that_is_no_envelope_is_kept_where_it_was_read() -> None:
    row = unparsable_record(
        b"\xffgarbage", topic="bazaar.orders", partition=3, offset=44, timestamp_ms=0, error="bad"
    )
    assert row.id == "bazaar.orders:3:44"
    assert row.type == "bazaar.support.message.unparsable"
    assert row.occurred_at == datetime(1970, 1, 1, tzinfo=UTC)
    assert orjson.loads(row.data_json)["raw"] == "/2dhcmJhZ2U="


def test_json_for_postgresql_has_no_nul_nor_nan_and_keeps_huge_numbers() -> None:
    assert orjson.loads(json_text({"a": "x\x00y", "b": ["\x00"]})) == {"a": "xy", "b": [""]}
    assert "\\u0000" not in json_text({"a": "x\x00y"})
    literal = {"a": "\\u0000 is fine as text"}
    assert orjson.loads(json_text(literal)) == literal
    assert json.loads(json_text({"n": 2**80, "f": float("nan")})) == {"n": 2**80, "f": None}
    assert json_text({"fast": "path"}) == '{"fast":"path"}'


def test_text_fields_lose_nul_characters() -> None:
    row = record("bazaar.orders.order.created", {"order_id": "o\x00k"}, subject="s\x00")
    assert row.entity == EntityRef("order", "ok")
    assert row.subject == "s"


def progress_of(type_: str, at: datetime, **data: Any) -> Any:
    return record(type_, {"order_id": "o", **data}, at=at).progress


def test_progress_is_the_same_whatever_order_the_messages_come_in() -> None:
    steps = [
        progress_of("bazaar.orders.order.created", T0),
        progress_of("bazaar.orders.saga.step_timed_out", T0 + timedelta(seconds=30)),
        progress_of("bazaar.orders.order.confirmed", T0 + timedelta(seconds=40)),
        progress_of("bazaar.orders.order.cancellation_requested", T0 + timedelta(seconds=50)),
        progress_of(
            "bazaar.orders.order.cancelled", T0 + timedelta(seconds=60), reason="user_request"
        ),
    ]
    results = {reduce(merge_progress, order) for order in itertools.permutations(steps)}

    assert len(results) == 1
    merged = results.pop()
    assert merged.started_at == T0
    assert merged.cancel_requested_at == T0 + timedelta(seconds=50)
    assert merged.ended_at == T0 + timedelta(seconds=60)
    assert merged.outcome == "cancelled:user_request"
    assert merged.last_event_type == "bazaar.orders.order.cancelled"
    # Merging a message again changes nothing.
    assert merge_progress(merged, steps[2]) == merged


def test_a_batch_has_one_progress_per_entity() -> None:
    rows = [
        record("bazaar.payments.command.charge", {"payment_id": "p"}, at=T0),
        record("bazaar.payments.payment.processing", {"payment_id": "p"}, at=T0 + timedelta(1)),
        record(
            "bazaar.payments.payment.failed", {"payment_id": "q", "failure_code": "card_declined"}
        ),
        record("bazaar.catalog.item.created", {"item_id": "i"}),
    ]

    combined = progress_by_entity(rows)

    assert set(combined) == {EntityRef("payment", "p"), EntityRef("payment", "q")}
    assert combined[EntityRef("payment", "p")].attempted_at == T0 + timedelta(1)
    assert combined[EntityRef("payment", "q")].outcome == "failed:card_declined"


def consumer_record(value: bytes, offset: int = 5) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic="t1.bazaar.orders",
        partition=2,
        offset=offset,
        timestamp=1_700_000_000_000,
        timestamp_type=0,
        key=b"k",
        value=value,
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=len(value),
        headers=(),
    )


def test_a_batch_keeps_each_message_once_and_never_fails_on_one() -> None:
    platform = PlatformSettings(topic_prefix="t1.")
    good = envelope("bazaar.orders.order.created", {"order_id": "o"})
    awkward = good.model_dump(mode="json")
    awkward.update(id="awkward", data={"huge": 2**70, "nan": float("nan")})
    records = [
        consumer_record(good.to_bytes(), offset=1),
        consumer_record(good.to_bytes(), offset=2),  # redelivered within the batch
        consumer_record(b"garbage", offset=3),
        consumer_record(json.dumps(awkward).encode(), offset=4),
    ]

    rows = history_records(records, platform)

    assert [row.id for row in rows] == [good.id, "bazaar.orders:2:3", "awkward"]
    assert rows[0].topic == "bazaar.orders"
    assert rows[1].type == "bazaar.support.message.unparsable"
    assert json.loads(rows[2].data_json) == {"huge": 2**70, "nan": None}
