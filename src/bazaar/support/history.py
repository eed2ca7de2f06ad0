"""What one message becomes in the history: its entity, its user, the links it reveals and
the milestone it marks in its saga. Pure functions, no I/O.

Messages are read by their CloudEvents ``type`` and their ``data``, leniently: support
records every message on every topic, including versions and types it has never heard
of, so a field it cannot find is simply left empty, never an error.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import orjson

from bazaar.kit.messaging.consumer import DEAD_LETTERED_TYPE
from bazaar.kit.messaging.envelope import Envelope
from bazaar.kit.telemetry import trace_id_of

UNPARSABLE_TYPE = "bazaar.support.message.unparsable"
SUPPORT_SOURCE = "bazaar/support"
# A raw unparsable message is kept up to this size (base64 of its first bytes).
MAX_RAW_BYTES = 64 * 1024

# Type prefix → (entity type, the data field holding its id). First match wins.
ENTITY_KEYS: tuple[tuple[str, str, str], ...] = (
    ("bazaar.orders.", "order", "order_id"),
    ("bazaar.payments.", "payment", "payment_id"),
    ("bazaar.auctions.", "auction", "auction_id"),
    # A reservation's id is its caller's (the order's): the order's timeline shows it.
    ("bazaar.catalog.stock.", "stock_reservation", "reservation_id"),
    ("bazaar.catalog.command.", "stock_reservation", "reservation_id"),
    ("bazaar.catalog.item.", "item", "item_id"),
    ("bazaar.auth.", "user", "user_id"),
)
SUPPORT_ACTION_PREFIX = "bazaar.support.action."
# Where a message's user is found when its envelope names none.
USER_FIELDS = ("user_id", "bidder_id", "seller_id")
# Entities that caused payments (ChargePayment.reference_type).
PAYING_ENTITIES = frozenset({"order", "auction"})

# Milestones of the sagas support watches, by message type.
STARTED = {
    "bazaar.orders.order.created",
    "bazaar.auctions.auction.closed",
    "bazaar.payments.command.charge",
}
CANCEL_REQUESTED = {"bazaar.orders.order.cancellation_requested"}
ATTEMPTED = {"bazaar.auctions.settlement.attempted", "bazaar.payments.payment.processing"}
# Final events, and the data field that refines the outcome (``cancelled:timeout``).
ENDED: Mapping[str, tuple[str, str | None]] = {
    "bazaar.orders.order.confirmed": ("confirmed", None),
    "bazaar.orders.order.cancelled": ("cancelled", "reason"),
    "bazaar.auctions.auction.settled": ("settled", None),
    "bazaar.auctions.auction.unsold": ("unsold", "reason"),
    "bazaar.auctions.auction.cancelled": ("cancelled", None),
    "bazaar.payments.payment.succeeded": ("succeeded", None),
    "bazaar.payments.payment.failed": ("failed", "failure_code"),
    "bazaar.payments.payment.refunded": ("refunded", None),
    "bazaar.payments.payment.cancelled": ("cancelled", None),
}
TRACKED_ENTITIES = frozenset({"order", "auction", "payment"})


@dataclass(frozen=True, slots=True)
class EntityRef:
    type: str
    id: str


@dataclass(frozen=True, slots=True)
class Link:
    """``parent`` caused ``child`` (an order its payment)."""

    parent: EntityRef
    child: EntityRef


@dataclass(frozen=True, slots=True)
class Progress:
    """What one message says about where its entity's saga stands (see
    :class:`bazaar.support.models.EntityProgress`); :func:`merge_progress` combines two."""

    entity: EntityRef
    last_event_id: str
    last_event_type: str
    last_event_at: datetime
    started_at: datetime | None = None
    cancel_requested_at: datetime | None = None
    attempted_at: datetime | None = None
    ended_at: datetime | None = None
    outcome: str | None = None
    outcome_event_id: str | None = None
    correlation_id: str | None = None
    user_id: str | None = None


@dataclass(frozen=True, slots=True)
class HistoryRecord:
    """One row of the history, with what it reveals about links and progress."""

    id: str
    type: str
    source: str
    topic: str
    partition: int
    offset: int
    subject: str | None
    entity: EntityRef | None
    user_id: str | None
    correlation_id: str | None
    trace_id: str | None
    occurred_at: datetime
    data_json: str
    links: tuple[Link, ...] = ()
    progress: Progress | None = None


def record_of(envelope: Envelope, *, topic: str, partition: int, offset: int) -> HistoryRecord:
    """The history row of a message read at ``topic``/``partition``/``offset``."""
    data = envelope.data
    entity = entity_of(envelope.type, data, envelope.subject)
    user_id = _clean(envelope.userid) or user_of(data)
    if envelope.type == DEAD_LETTERED_TYPE:
        original = _original(data)
        if original is not None:
            user_id = user_id or _text(original.get("userid")) or user_of(_data_of(original))
    occurred_at = _aware(envelope.time)
    record = HistoryRecord(
        id=_clean(envelope.id) or f"{topic}:{partition}:{offset}",
        type=_clean(envelope.type) or "",
        source=_clean(envelope.source) or "",
        topic=topic,
        partition=partition,
        offset=offset,
        subject=_clean(envelope.subject),
        entity=entity,
        user_id=user_id,
        correlation_id=_clean(envelope.correlationid),
        trace_id=trace_id_of(envelope.traceparent),
        occurred_at=occurred_at,
        data_json=json_text(data),
        links=tuple(links_of(envelope.type, data, entity)),
    )
    return replace(record, progress=progress_of(record, data))


def unparsable_record(
    raw: bytes, *, topic: str, partition: int, offset: int, timestamp_ms: int, error: str
) -> HistoryRecord:
    """A message that is not a CloudEvents envelope, kept so that nothing read is lost.

    Its id is where it was read, so a replay records it under the same id again.
    """
    return HistoryRecord(
        id=f"{topic}:{partition}:{offset}",
        type=UNPARSABLE_TYPE,
        source=SUPPORT_SOURCE,
        topic=topic,
        partition=partition,
        offset=offset,
        subject=None,
        entity=EntityRef("message", f"{topic}:{partition}:{offset}"),
        user_id=None,
        correlation_id=None,
        trace_id=None,
        occurred_at=datetime.fromtimestamp(timestamp_ms / 1000, UTC),
        data_json=json_text(
            {
                "error": error[:2000],
                "size": len(raw),
                "raw": base64.b64encode(raw[:MAX_RAW_BYTES]).decode(),
            }
        ),
    )


def entity_of(type_: str, data: Mapping[str, Any], subject: str | None = None) -> EntityRef | None:
    """What a message is about; a dead letter is about its original message."""
    if type_ == DEAD_LETTERED_TYPE:
        original = _original(data)
        if original is not None:
            inner = entity_of(_text(original.get("type")) or "", _data_of(original))
            if inner is not None:
                return inner
        return EntityRef("message", _clean(subject) or "unknown")
    if type_.startswith(SUPPORT_ACTION_PREFIX):
        target_type, target_id = _text(data.get("target_type")), _text(data.get("target_id"))
        return EntityRef(target_type, target_id) if target_type and target_id else None
    for prefix, entity_type, field in ENTITY_KEYS:
        if type_.startswith(prefix):
            entity_id = _text(data.get(field))
            return EntityRef(entity_type, entity_id) if entity_id else None
    return None


def user_of(data: Mapping[str, Any]) -> str | None:
    for field in USER_FIELDS:
        user_id = _text(data.get(field))
        if user_id:
            return user_id
    return None


def links_of(type_: str, data: Mapping[str, Any], entity: EntityRef | None) -> list[Link]:
    """The links a message reveals: a payment's order or auction (``reference_*``), an
    order's or auction's payment (``payment_id``)."""
    if entity is None or type_ == DEAD_LETTERED_TYPE:
        return []
    links = []
    if entity.type == "payment":
        reference_type = _text(data.get("reference_type"))
        reference_id = _text(data.get("reference_id"))
        if reference_type in PAYING_ENTITIES and reference_id:
            links.append(Link(EntityRef(reference_type, reference_id), entity))
    elif entity.type in PAYING_ENTITIES:
        payment_id = _text(data.get("payment_id"))
        if payment_id:
            links.append(Link(entity, EntityRef("payment", payment_id)))
    return links


def progress_of(record: HistoryRecord, data: Mapping[str, Any]) -> Progress | None:
    """The milestone a message marks in its order's, auction's or payment's saga."""
    entity = record.entity
    if entity is None or entity.type not in TRACKED_ENTITIES or record.type == DEAD_LETTERED_TYPE:
        return None
    if record.type.startswith(SUPPORT_ACTION_PREFIX):
        return None
    at = record.occurred_at
    progress = Progress(
        entity=entity,
        last_event_id=record.id,
        last_event_type=record.type,
        last_event_at=at,
        correlation_id=record.correlation_id,
        user_id=record.user_id,
    )
    if record.type in STARTED:
        return replace(progress, started_at=at)
    if record.type in CANCEL_REQUESTED:
        return replace(progress, cancel_requested_at=at)
    if record.type in ATTEMPTED:
        return replace(progress, attempted_at=at)
    if record.type in ENDED:
        outcome, refinement = ENDED[record.type]
        if refinement is not None:
            detail = _text(data.get(refinement))
            if detail:
                outcome = f"{outcome}:{detail}"
        return replace(progress, ended_at=at, outcome=outcome, outcome_event_id=record.id)
    return progress


def merge_progress(old: Progress, new: Progress) -> Progress:
    """Two messages' progress of one entity, combined the way the database upsert does:
    earliest start, latest milestones, outcome and last event of the latest message (by
    time, then id), first correlation and user seen. Commutative and idempotent except
    for those last two, which are the same on every message of a saga."""
    last = max(old, new, key=lambda p: (p.last_event_at, p.last_event_id))
    outcome_of = old
    if new.ended_at is not None and (
        old.ended_at is None
        or (new.ended_at, new.outcome_event_id or "") > (old.ended_at, old.outcome_event_id or "")
    ):
        outcome_of = new
    return Progress(
        entity=old.entity,
        last_event_id=last.last_event_id,
        last_event_type=last.last_event_type,
        last_event_at=last.last_event_at,
        started_at=_earliest(old.started_at, new.started_at),
        cancel_requested_at=_latest(old.cancel_requested_at, new.cancel_requested_at),
        attempted_at=_latest(old.attempted_at, new.attempted_at),
        ended_at=_latest(old.ended_at, new.ended_at),
        outcome=outcome_of.outcome,
        outcome_event_id=outcome_of.outcome_event_id,
        correlation_id=old.correlation_id or new.correlation_id,
        user_id=old.user_id or new.user_id,
    )


def progress_by_entity(records: Iterable[HistoryRecord]) -> dict[EntityRef, Progress]:
    """One combined :class:`Progress` per entity (a batch's upsert may touch a row once)."""
    combined: dict[EntityRef, Progress] = {}
    for record in records:
        progress = record.progress
        if progress is None:
            continue
        known = combined.get(progress.entity)
        combined[progress.entity] = progress if known is None else merge_progress(known, progress)
    return combined


def json_text(data: Any) -> str:
    """``data`` as JSON text PostgreSQL's ``jsonb`` accepts: it refuses ``\\u0000`` and
    ``NaN``, and orjson (fast, used whenever it can) refuses integers beyond 64 bits."""
    try:
        text = orjson.dumps(data).decode()  # NaN and infinities become null
    except TypeError:
        return json.dumps(_storable(data), default=str)
    if "\\u0000" in text:
        return json.dumps(_storable(data), default=str)
    return text


def _storable(value: Any) -> Any:
    """``value`` without NUL characters and with non-finite numbers as null."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, Mapping):
        return {_storable(str(key)): _storable(inner) for key, inner in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(inner) for inner in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _original(data: Mapping[str, Any]) -> Mapping[str, Any] | None:
    original = data.get("original")
    return original if isinstance(original, Mapping) else None


def _data_of(message: Mapping[str, Any]) -> Mapping[str, Any]:
    data = message.get("data")
    return data if isinstance(data, Mapping) else {}


def _text(value: Any) -> str | None:
    """A field as text when it is a scalar worth keeping, else None."""
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _clean(value: str | None) -> str | None:
    """Text PostgreSQL accepts (no NUL), or None for nothing."""
    if not value:
        return None
    return value.replace("\x00", "") if "\x00" in value else value


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else max(a, b)
