"""Support tables: the history (a read model of every message), what links its entities,
each saga's progress, and the support actions. Never returned from a route.

``events``, ``entity_links`` and ``entity_progress`` are derived from the topics only, so
``bazaar support replay`` can empty and rebuild them; ``support_actions`` is support's
own record of who asked for what and why, and survives a replay.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    DateTime,
    Index,
    Integer,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bazaar.kit.db import new_metadata

metadata = new_metadata()


class Base(DeclarativeBase):
    metadata = metadata


class HistoryEvent(Base):
    """One message as it was published, written once: its envelope id is the key, so a
    redelivery (or a replay over a history that has it) changes nothing."""

    __tablename__ = "events"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    type: Mapped[str] = mapped_column(Text, nullable=False)
    source: Mapped[str] = mapped_column(Text, nullable=False)
    # Where it was read: the contract's topic name (no deployment prefix), partition, offset.
    topic: Mapped[str] = mapped_column(Text, nullable=False)
    kafka_partition: Mapped[int] = mapped_column(Integer, nullable=False)
    kafka_offset: Mapped[int] = mapped_column(BigInteger, nullable=False)
    subject: Mapped[str | None] = mapped_column(Text, nullable=True)
    # What it is about (``order`` and its id, ...); a dead letter is about its original.
    entity_type: Mapped[str | None] = mapped_column(Text, nullable=True)
    entity_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    user_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    correlation_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    trace_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The envelope's time: when it happened at its source.
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    recorded_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)

    __table_args__ = (
        Index("ix_events_occurred", "occurred_at", "id"),
        Index("ix_events_user", "user_id", "occurred_at", "id"),
        Index("ix_events_entity", "entity_id", "occurred_at"),
        Index("ix_events_entity_type", "entity_type", "occurred_at", "id"),
        Index("ix_events_correlation", "correlation_id", "occurred_at"),
        Index("ix_events_type", "type", "occurred_at", "id"),
    )


class EntityLink(Base):
    """``parent`` caused ``child``: an order its payment, an auction each payment its
    settlement asked for. A timeline shows a parent's events with its children's."""

    __tablename__ = "entity_links"

    parent_id: Mapped[str] = mapped_column(Text, primary_key=True)
    child_id: Mapped[str] = mapped_column(Text, primary_key=True)
    parent_type: Mapped[str] = mapped_column(Text, nullable=False)
    child_type: Mapped[str] = mapped_column(Text, nullable=False)

    __table_args__ = (Index("ix_entity_links_child", "child_id"),)


# Whether an entity waits for an outcome: never ended, or asked for something (a
# cancellation, a settlement or provider attempt) after it last ended.
OPEN_EXPRESSION = (
    "ended_at IS NULL OR COALESCE(ended_at < GREATEST(cancel_requested_at, attempted_at), false)"
)


class EntityProgress(Base):
    """Where one order, auction or payment stands, from the milestones seen in its events.

    Each milestone column keeps the earliest (``started_at``) or latest time it was seen,
    and ``outcome`` / ``last_event_*`` follow the latest event by time, so the row is the
    same whatever order its events arrive in (different topics, redeliveries, a replay).
    Problems (stuck sagas, failed settlements) are questions about these rows.
    """

    __tablename__ = "entity_progress"

    entity_type: Mapped[str] = mapped_column(Text, primary_key=True)
    entity_id: Mapped[str] = mapped_column(Text, primary_key=True)
    # The saga began: an order created, an auction closed, a charge asked for.
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancel_requested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The latest settlement attempt (auctions), or the provider asked (payments processing).
    attempted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The latest final event: confirmed/cancelled, settled/unsold/cancelled, a payment outcome.
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[str | None] = mapped_column(Text)
    outcome_event_id: Mapped[str | None] = mapped_column(Text)
    last_event_id: Mapped[str] = mapped_column(Text, nullable=False)
    last_event_type: Mapped[str] = mapped_column(Text, nullable=False)
    last_event_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    correlation_id: Mapped[str | None] = mapped_column(Text)
    user_id: Mapped[str | None] = mapped_column(Text)
    open: Mapped[bool] = mapped_column(Boolean, Computed(OPEN_EXPRESSION, persisted=True))

    __table_args__ = (
        Index(
            "ix_entity_progress_open",
            "entity_type",
            "entity_id",
            postgresql_where=text("open"),
        ),
        Index("ix_entity_progress_outcome", "entity_type", "outcome"),
    )


class SupportAction(Base):
    """A corrective action: who asked, why, and what the owning service answered.

    ``pending`` until the worker got an answer; at most one action per (action, target)
    is pending or succeeded at a time (a second identical request finds the first).
    """

    __tablename__ = "support_actions"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    action: Mapped[str] = mapped_column(Text, nullable=False)
    target_type: Mapped[str] = mapped_column(Text, nullable=False)
    target_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    requested_by: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(Text, nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    # The owning service's answer (or why it could not be reached).
    response_status: Mapped[int | None] = mapped_column(Integer)
    code: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[str | None] = mapped_column(Text)
    response: Mapped[Any | None] = mapped_column(JSONB)
    # Carried into the call and the events, so the action joins its target's saga.
    correlation_id: Mapped[str | None] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(Text)
    traceparent: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name="status"),
        CheckConstraint("length(reason) > 0", name="reason_not_empty"),
        # The idempotency of actions: one live (pending or succeeded) per action and target.
        Index(
            "uq_support_actions_live",
            "action",
            "target_id",
            unique=True,
            postgresql_where=text("status <> 'failed'"),
        ),
        Index(
            "ix_support_actions_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_support_actions_target", "target_id", "created_at"),
    )
