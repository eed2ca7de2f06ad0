"""Every query of the support service, and only here.

The history is written in bulk: one ``INSERT … SELECT FROM unnest(…)`` per table per
batch (a few thousand rows in one statement, one round trip, one prepared plan), rows
sorted by key so that replicas writing side by side take row locks in one order.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, text, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.support.history import HistoryRecord, Link, Progress
from bazaar.support.models import EntityLink, EntityProgress, HistoryEvent, SupportAction

# --- writing the history --------------------------------------------------------------

_INSERT_EVENTS = text(
    """
    INSERT INTO events (
        id, type, source, topic, kafka_partition, kafka_offset, subject, entity_type,
        entity_id, user_id, correlation_id, trace_id, occurred_at, recorded_at, data
    )
    SELECT r.id, r.type, r.source, r.topic, r.kafka_partition, r.kafka_offset, r.subject,
           r.entity_type, r.entity_id, r.user_id, r.correlation_id, r.trace_id,
           r.occurred_at, clock_timestamp(), CAST(r.data AS jsonb)
    FROM unnest(
        CAST(:id AS text[]), CAST(:type AS text[]), CAST(:source AS text[]),
        CAST(:topic AS text[]), CAST(:kafka_partition AS integer[]),
        CAST(:kafka_offset AS bigint[]), CAST(:subject AS text[]),
        CAST(:entity_type AS text[]), CAST(:entity_id AS text[]), CAST(:user_id AS text[]),
        CAST(:correlation_id AS text[]), CAST(:trace_id AS text[]),
        CAST(:occurred_at AS timestamptz[]), CAST(:data AS text[])
    ) AS r(
        id, type, source, topic, kafka_partition, kafka_offset, subject, entity_type,
        entity_id, user_id, correlation_id, trace_id, occurred_at, data
    )
    ON CONFLICT (id) DO NOTHING
    RETURNING id
    """
)

_INSERT_LINKS = text(
    """
    INSERT INTO entity_links (parent_type, parent_id, child_type, child_id)
    SELECT * FROM unnest(
        CAST(:parent_type AS text[]), CAST(:parent_id AS text[]),
        CAST(:child_type AS text[]), CAST(:child_id AS text[])
    )
    ON CONFLICT DO NOTHING
    """
)

# The merge rules of history.merge_progress, for a row already in the table. On the
# right-hand side ``p`` is the row as it was before this update.
_UPSERT_PROGRESS = text(
    """
    INSERT INTO entity_progress AS p (
        entity_type, entity_id, started_at, cancel_requested_at, attempted_at, ended_at,
        outcome, outcome_event_id, last_event_id, last_event_type, last_event_at,
        correlation_id, user_id
    )
    SELECT * FROM unnest(
        CAST(:entity_type AS text[]), CAST(:entity_id AS text[]),
        CAST(:started_at AS timestamptz[]), CAST(:cancel_requested_at AS timestamptz[]),
        CAST(:attempted_at AS timestamptz[]), CAST(:ended_at AS timestamptz[]),
        CAST(:outcome AS text[]), CAST(:outcome_event_id AS text[]),
        CAST(:last_event_id AS text[]), CAST(:last_event_type AS text[]),
        CAST(:last_event_at AS timestamptz[]), CAST(:correlation_id AS text[]),
        CAST(:user_id AS text[])
    )
    ON CONFLICT (entity_type, entity_id) DO UPDATE SET
        started_at = LEAST(p.started_at, EXCLUDED.started_at),
        cancel_requested_at = GREATEST(p.cancel_requested_at, EXCLUDED.cancel_requested_at),
        attempted_at = GREATEST(p.attempted_at, EXCLUDED.attempted_at),
        ended_at = GREATEST(p.ended_at, EXCLUDED.ended_at),
        outcome = CASE WHEN EXCLUDED.ended_at IS NOT NULL AND (
                p.ended_at IS NULL
                OR (EXCLUDED.ended_at, EXCLUDED.outcome_event_id)
                   > (p.ended_at, COALESCE(p.outcome_event_id, ''))
            ) THEN EXCLUDED.outcome ELSE p.outcome END,
        outcome_event_id = CASE WHEN EXCLUDED.ended_at IS NOT NULL AND (
                p.ended_at IS NULL
                OR (EXCLUDED.ended_at, EXCLUDED.outcome_event_id)
                   > (p.ended_at, COALESCE(p.outcome_event_id, ''))
            ) THEN EXCLUDED.outcome_event_id ELSE p.outcome_event_id END,
        last_event_id = CASE WHEN (EXCLUDED.last_event_at, EXCLUDED.last_event_id)
                > (p.last_event_at, p.last_event_id)
            THEN EXCLUDED.last_event_id ELSE p.last_event_id END,
        last_event_type = CASE WHEN (EXCLUDED.last_event_at, EXCLUDED.last_event_id)
                > (p.last_event_at, p.last_event_id)
            THEN EXCLUDED.last_event_type ELSE p.last_event_type END,
        last_event_at = GREATEST(p.last_event_at, EXCLUDED.last_event_at),
        correlation_id = COALESCE(p.correlation_id, EXCLUDED.correlation_id),
        user_id = COALESCE(p.user_id, EXCLUDED.user_id)
    """
)


async def insert_events(session: AsyncSession, records: Sequence[HistoryRecord]) -> set[str]:
    """Write the records not yet in the history; the ids of those that were new."""
    if not records:
        return set()
    rows = sorted(records, key=lambda r: r.id)
    result = await session.execute(
        _INSERT_EVENTS,
        {
            "id": [r.id for r in rows],
            "type": [r.type for r in rows],
            "source": [r.source for r in rows],
            "topic": [r.topic for r in rows],
            "kafka_partition": [r.partition for r in rows],
            "kafka_offset": [r.offset for r in rows],
            "subject": [r.subject for r in rows],
            "entity_type": [r.entity.type if r.entity else None for r in rows],
            "entity_id": [r.entity.id if r.entity else None for r in rows],
            "user_id": [r.user_id for r in rows],
            "correlation_id": [r.correlation_id for r in rows],
            "trace_id": [r.trace_id for r in rows],
            "occurred_at": [r.occurred_at for r in rows],
            "data": [r.data_json for r in rows],
        },
    )
    return {row[0] for row in result}


async def insert_links(session: AsyncSession, links: Iterable[Link]) -> None:
    unique = sorted(
        {(link.parent.id, link.child.id): link for link in links}.items(), key=lambda kv: kv[0]
    )
    if not unique:
        return
    await session.execute(
        _INSERT_LINKS,
        {
            "parent_type": [link.parent.type for _, link in unique],
            "parent_id": [link.parent.id for _, link in unique],
            "child_type": [link.child.type for _, link in unique],
            "child_id": [link.child.id for _, link in unique],
        },
    )


async def upsert_progress(session: AsyncSession, progress: Iterable[Progress]) -> None:
    """Merge each entity's progress (one per entity) into its row."""
    rows = sorted(progress, key=lambda p: (p.entity.type, p.entity.id))
    if not rows:
        return
    await session.execute(
        _UPSERT_PROGRESS,
        {
            "entity_type": [p.entity.type for p in rows],
            "entity_id": [p.entity.id for p in rows],
            "started_at": [p.started_at for p in rows],
            "cancel_requested_at": [p.cancel_requested_at for p in rows],
            "attempted_at": [p.attempted_at for p in rows],
            "ended_at": [p.ended_at for p in rows],
            "outcome": [p.outcome for p in rows],
            "outcome_event_id": [p.outcome_event_id for p in rows],
            "last_event_id": [p.last_event_id for p in rows],
            "last_event_type": [p.last_event_type for p in rows],
            "last_event_at": [p.last_event_at for p in rows],
            "correlation_id": [p.correlation_id for p in rows],
            "user_id": [p.user_id for p in rows],
        },
    )


async def empty_history(session: AsyncSession) -> None:
    """Delete everything derived from the topics (support actions stay)."""
    await session.execute(text("TRUNCATE events, entity_links, entity_progress"))


# --- reading the history --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OperationFilters:
    user_id: str | None = None
    entity_type: str | None = None
    entity_id: str | None = None
    type: str | None = None
    correlation_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


async def list_events(
    session: AsyncSession,
    filters: OperationFilters,
    *,
    limit: int,
    before: tuple[datetime, str] | None = None,
) -> list[HistoryEvent]:
    """Events matching ``filters``, newest first, keyset-paginated on (occurred_at, id)."""
    statement = select(HistoryEvent)
    conditions = []
    if filters.user_id is not None:
        conditions.append(HistoryEvent.user_id == filters.user_id)
    if filters.entity_type is not None:
        conditions.append(HistoryEvent.entity_type == filters.entity_type)
    if filters.entity_id is not None:
        conditions.append(HistoryEvent.entity_id == filters.entity_id)
    if filters.type is not None:
        conditions.append(HistoryEvent.type == filters.type)
    if filters.correlation_id is not None:
        conditions.append(HistoryEvent.correlation_id == filters.correlation_id)
    if filters.since is not None:
        conditions.append(HistoryEvent.occurred_at >= filters.since)
    if filters.until is not None:
        conditions.append(HistoryEvent.occurred_at < filters.until)
    if before is not None:
        conditions.append(tuple_(HistoryEvent.occurred_at, HistoryEvent.id) < tuple_(*before))
    statement = (
        statement.where(*conditions)
        .order_by(HistoryEvent.occurred_at.desc(), HistoryEvent.id.desc())
        .limit(limit)
    )
    return list((await session.execute(statement)).scalars())


async def children_of(session: AsyncSession, entity_id: str) -> list[str]:
    """The ids of what ``entity_id`` caused (an order's payments)."""
    statement = select(EntityLink.child_id).where(EntityLink.parent_id == entity_id)
    return list((await session.execute(statement)).scalars())


async def timeline(
    session: AsyncSession,
    entity_id: str,
    related_ids: Sequence[str],
    *,
    limit: int,
    after: tuple[datetime, str] | None = None,
) -> list[HistoryEvent]:
    """The events of ``entity_id`` and of ``related_ids``, and those carrying
    ``entity_id`` as correlation id (its saga), oldest first."""
    ids = [entity_id, *related_ids]
    statement = select(HistoryEvent).where(
        or_(HistoryEvent.entity_id.in_(ids), HistoryEvent.correlation_id == entity_id)
    )
    if after is not None:
        statement = statement.where(
            tuple_(HistoryEvent.occurred_at, HistoryEvent.id) > tuple_(*after)
        )
    statement = statement.order_by(HistoryEvent.occurred_at, HistoryEvent.id).limit(limit)
    return list((await session.execute(statement)).scalars())


async def get_progress(
    session: AsyncSession, entity_type: str, entity_id: str
) -> EntityProgress | None:
    return await session.get(EntityProgress, (entity_type, entity_id))


# --- problems -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProblemCutoffs:
    """A saga milestone older than its cutoff, with no outcome since, is a problem."""

    order: datetime
    cancellation: datetime
    settlement: datetime
    payment: datetime
    dead_letter: datetime


# Each kind of problem as one SELECT of (id, kind, since, ...); the API unions them.
_PROBLEM_QUERIES: dict[str, str] = {
    "order_stuck": """
        SELECT 'order_stuck:' || p.entity_id AS id, 'order_stuck' AS kind,
               p.started_at AS since,
               p.entity_type, p.entity_id, p.correlation_id, p.user_id, p.last_event_id,
               p.last_event_type, p.last_event_at, p.outcome, CAST(NULL AS jsonb) AS detail
        FROM entity_progress p
        WHERE p.open AND p.entity_type = 'order' AND p.cancel_requested_at IS NULL
          AND p.started_at < :order_cutoff""",
    "cancellation_stuck": """
        SELECT 'cancellation_stuck:' || p.entity_id AS id, 'cancellation_stuck' AS kind,
               p.cancel_requested_at AS since,
               p.entity_type, p.entity_id, p.correlation_id, p.user_id, p.last_event_id,
               p.last_event_type, p.last_event_at, p.outcome, CAST(NULL AS jsonb) AS detail
        FROM entity_progress p
        WHERE p.open AND p.entity_type = 'order'
          AND p.cancel_requested_at < :cancellation_cutoff""",
    "settlement_stuck": """
        SELECT 'settlement_stuck:' || p.entity_id AS id, 'settlement_stuck' AS kind,
               GREATEST(p.started_at, p.attempted_at) AS since,
               p.entity_type, p.entity_id, p.correlation_id, p.user_id, p.last_event_id,
               p.last_event_type, p.last_event_at, p.outcome, CAST(NULL AS jsonb) AS detail
        FROM entity_progress p
        WHERE p.open AND p.entity_type = 'auction'
          AND GREATEST(p.started_at, p.attempted_at) < :settlement_cutoff""",
    "settlement_failed": """
        SELECT 'settlement_failed:' || p.entity_id AS id, 'settlement_failed' AS kind,
               p.ended_at AS since,
               p.entity_type, p.entity_id, p.correlation_id, p.user_id, p.last_event_id,
               p.last_event_type, p.last_event_at, p.outcome, CAST(NULL AS jsonb) AS detail
        FROM entity_progress p
        WHERE NOT p.open AND p.entity_type = 'auction'
          AND p.outcome = 'unsold:no_payable_bidder'""",
    "payment_unknown_outcome": """
        SELECT 'payment_unknown_outcome:' || p.entity_id AS id, 'payment_unknown_outcome' AS kind,
               p.attempted_at AS since,
               p.entity_type, p.entity_id, p.correlation_id, p.user_id, p.last_event_id,
               p.last_event_type, p.last_event_at, p.outcome, CAST(NULL AS jsonb) AS detail
        FROM entity_progress p
        WHERE p.open AND p.entity_type = 'payment' AND p.attempted_at < :payment_cutoff""",
    "payment_unanswered": """
        SELECT 'payment_unanswered:' || p.entity_id AS id, 'payment_unanswered' AS kind,
               p.started_at AS since,
               p.entity_type, p.entity_id, p.correlation_id, p.user_id, p.last_event_id,
               p.last_event_type, p.last_event_at, p.outcome, CAST(NULL AS jsonb) AS detail
        FROM entity_progress p
        WHERE p.open AND p.entity_type = 'payment' AND p.attempted_at IS NULL
          AND p.started_at < :payment_cutoff""",
    # Listed until the entity it was about shows it ended after it, or the window passes.
    "dead_letter": """
        SELECT 'dead_letter:' || e.id AS id, 'dead_letter' AS kind, e.occurred_at AS since,
               e.entity_type, e.entity_id, e.correlation_id, e.user_id,
               e.id AS last_event_id, e.type AS last_event_type,
               e.occurred_at AS last_event_at, NULL AS outcome,
               jsonb_build_object(
                   'consumer', e.data -> 'consumer',
                   'error', e.data -> 'error',
                   'topic', e.data -> 'topic',
                   'original_id', e.data -> 'original' -> 'id',
                   'original_type', e.data -> 'original' -> 'type'
               ) AS detail
        FROM events e
        LEFT JOIN entity_progress p
          ON p.entity_type = e.entity_type AND p.entity_id = e.entity_id
        WHERE e.type = 'bazaar.platform.message.dead_lettered'
          AND e.occurred_at > :dead_letter_cutoff
          AND NOT COALESCE(NOT p.open AND p.ended_at >= e.occurred_at, false)""",
}
PROBLEM_KINDS: tuple[str, ...] = tuple(_PROBLEM_QUERIES)


def _cutoff_params(cutoffs: ProblemCutoffs) -> dict[str, Any]:
    return {
        "order_cutoff": cutoffs.order,
        "cancellation_cutoff": cutoffs.cancellation,
        "settlement_cutoff": cutoffs.settlement,
        "payment_cutoff": cutoffs.payment,
        "dead_letter_cutoff": cutoffs.dead_letter,
    }


def _problems_sql(kinds: Sequence[str]) -> str:
    return "\nUNION ALL\n".join(_PROBLEM_QUERIES[kind] for kind in kinds)


async def find_problems(
    session: AsyncSession,
    cutoffs: ProblemCutoffs,
    *,
    kinds: Sequence[str] = PROBLEM_KINDS,
    limit: int,
    after: tuple[datetime, str] | None = None,
) -> list[Any]:
    """Problems of ``kinds``, longest-standing first, keyset-paginated on (since, id)."""
    used = [kind for kind in kinds if kind in _PROBLEM_QUERIES]
    params = _cutoff_params(cutoffs)
    params = {name: value for name, value in params.items() if _uses(used, name)}
    keyset = ""
    if after is not None:
        keyset = (
            "WHERE (problem.since, problem.id)"
            " > (CAST(:after_since AS timestamptz), CAST(:after_id AS text))"
        )
        params.update(after_since=after[0], after_id=after[1])
    params["limit"] = limit
    statement = text(
        f"SELECT * FROM ({_problems_sql(used)}) AS problem {keyset} "  # noqa: S608 - constant SQL
        "ORDER BY problem.since, problem.id LIMIT :limit"
    )
    return list((await session.execute(statement, params)).all())


async def count_problems(session: AsyncSession, cutoffs: ProblemCutoffs) -> dict[str, int]:
    """How many problems of each kind there are now (kinds with none included, as 0)."""
    statement = text(
        f"SELECT problem.kind, count(*) FROM ({_problems_sql(PROBLEM_KINDS)}) AS problem "  # noqa: S608 - constant SQL
        "GROUP BY problem.kind"
    )
    counts = dict.fromkeys(PROBLEM_KINDS, 0)
    for kind, count in await session.execute(statement, _cutoff_params(cutoffs)):
        counts[kind] = count
    return counts


def _uses(kinds: Sequence[str], parameter: str) -> bool:
    return any(f":{parameter}" in _PROBLEM_QUERIES[kind] for kind in kinds)


# --- support actions ------------------------------------------------------------------


# The live-action index's own predicate, written out: PostgreSQL finds the index an ON
# CONFLICT names only if the statement's predicate implies the index's, and a bound
# parameter (``status <> $1``) implies nothing once the prepared insert runs on a plan
# made for any value, as it does after five runs on a connection.
_LIVE_ACTION = text("status <> 'failed'")


async def add_action(session: AsyncSession, values: dict[str, Any]) -> SupportAction | None:
    """Insert a new action unless one like it (same action and target) is pending or
    succeeded; None then. Concurrent identical requests: exactly one inserts."""
    result = await session.execute(
        insert(SupportAction)
        .values(**values)
        .on_conflict_do_nothing(
            index_elements=[SupportAction.action, SupportAction.target_id],
            index_where=_LIVE_ACTION,
        )
        .returning(SupportAction)
    )
    return result.scalar_one_or_none()


async def live_action(
    session: AsyncSession, action: str, target_id: uuid.UUID
) -> SupportAction | None:
    """The pending or succeeded action of this kind on this target, if any."""
    statement = select(SupportAction).where(
        SupportAction.action == action,
        SupportAction.target_id == target_id,
        SupportAction.status != "failed",
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def get_action(session: AsyncSession, action_id: uuid.UUID) -> SupportAction | None:
    return await session.get(SupportAction, action_id)


async def list_actions(
    session: AsyncSession,
    *,
    target_id: uuid.UUID | None,
    status: str | None,
    limit: int,
    before: tuple[datetime, uuid.UUID] | None = None,
) -> list[SupportAction]:
    """Actions newest first, keyset-paginated on (created_at, id)."""
    statement = select(SupportAction)
    if target_id is not None:
        statement = statement.where(SupportAction.target_id == target_id)
    if status is not None:
        statement = statement.where(SupportAction.status == status)
    if before is not None:
        statement = statement.where(
            tuple_(SupportAction.created_at, SupportAction.id) < tuple_(*before)
        )
    statement = statement.order_by(SupportAction.created_at.desc(), SupportAction.id.desc())
    return list((await session.execute(statement.limit(limit))).scalars())


async def claim_due_action(session: AsyncSession, now: datetime) -> SupportAction | None:
    """The oldest pending action that is due, locked for this transaction; actions other
    workers hold are skipped, so replicas work side by side."""
    statement = (
        select(SupportAction)
        .where(SupportAction.status == "pending", SupportAction.next_attempt_at <= now)
        .order_by(SupportAction.next_attempt_at, SupportAction.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    return (await session.execute(statement)).scalar_one_or_none()
