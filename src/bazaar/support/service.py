"""The support desk's rules: reading the history, finding problems, and asking for actions.

Functions take the caller's session and never commit: the request's edge (or the action
worker's loop) does, so an action, its outbox event and its outcome land together.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.contracts.support import (
    SupportActionCompleted,
    SupportActionEvent,
    SupportActionRequested,
)
from bazaar.kit.logging import get_logger
from bazaar.kit.messaging.outbox import publish_message
from bazaar.kit.pagination import PageParams, cursor_part, decode_cursor, encode_cursor
from bazaar.kit.requestcontext import current_request_id
from bazaar.kit.telemetry import current_traceparent
from bazaar.kit.tokens import Principal
from bazaar.support import problems, repository
from bazaar.support.actions import ACTIONS, RetryPolicy, Verdict
from bazaar.support.errors import ActionNotFound
from bazaar.support.models import HistoryEvent, SupportAction
from bazaar.support.repository import OperationFilters, ProblemCutoffs
from bazaar.support.schemas import (
    ActionCreate,
    ActionName,
    ActionOutcome,
    ActionPage,
    ActionRead,
    ActionStatus,
    LastEvent,
    OperationPage,
    OperationRead,
    ProblemPage,
    ProblemRead,
    Timeline,
)

SOURCE = "bazaar/support"

log = get_logger(__name__)


# --- the history ------------------------------------------------------------------------


async def list_operations(
    session: AsyncSession, filters: OperationFilters, page: PageParams
) -> OperationPage:
    """The history, newest first, filtered."""
    before = None
    if page.cursor:
        occurred_at, last_id = decode_cursor(page.cursor, 2)
        before = (cursor_part(datetime.fromisoformat, occurred_at), cursor_part(str, last_id))
    found = await repository.list_events(session, filters, limit=page.limit + 1, before=before)
    rows = found[: page.limit]
    next_cursor = None
    if len(found) > page.limit:
        next_cursor = encode_cursor(rows[-1].occurred_at.isoformat(), rows[-1].id)
    return OperationPage(items=[operation_read(row) for row in rows], next_cursor=next_cursor)


async def get_timeline(
    session: AsyncSession, entity_id: str, *, limit: int, cursor: str | None
) -> Timeline:
    """What happened to ``entity_id`` (its events, its saga's, support's actions on it) and
    to what it caused (an order's payment, an auction's payments), oldest first."""
    after = None
    if cursor:
        occurred_at, last_id = decode_cursor(cursor, 2)
        after = (cursor_part(datetime.fromisoformat, occurred_at), cursor_part(str, last_id))
    related = sorted(set(await repository.children_of(session, entity_id)) - {entity_id})
    found = await repository.timeline(session, entity_id, related, limit=limit + 1, after=after)
    rows = found[:limit]
    next_cursor = None
    if len(found) > limit:
        next_cursor = encode_cursor(rows[-1].occurred_at.isoformat(), rows[-1].id)
    return Timeline(
        entity_id=entity_id,
        related_ids=related,
        items=[operation_read(row) for row in rows],
        next_cursor=next_cursor,
    )


def operation_read(event: HistoryEvent) -> OperationRead:
    return OperationRead(
        id=event.id,
        type=event.type,
        source=event.source,
        entity_type=event.entity_type,
        entity_id=event.entity_id,
        user_id=event.user_id,
        occurred_at=event.occurred_at,
        correlation_id=event.correlation_id,
        trace_id=event.trace_id,
        data=event.data,
        subject=event.subject,
        topic=event.topic,
        partition=event.kafka_partition,
        offset=event.kafka_offset,
        recorded_at=event.recorded_at,
    )


# --- problems ---------------------------------------------------------------------------


async def list_problems(
    session: AsyncSession, cutoffs: ProblemCutoffs, page: PageParams, *, kind: str | None
) -> ProblemPage:
    """Problems, longest-standing first."""
    after = None
    if page.cursor:
        since, last_id = decode_cursor(page.cursor, 2)
        after = (cursor_part(datetime.fromisoformat, since), cursor_part(str, last_id))
    kinds = [kind] if kind else list(repository.PROBLEM_KINDS)
    found = await repository.find_problems(
        session, cutoffs, kinds=kinds, limit=page.limit + 1, after=after
    )
    rows = found[: page.limit]
    next_cursor = None
    if len(found) > page.limit:
        next_cursor = encode_cursor(rows[-1].since.isoformat(), rows[-1].id)
    return ProblemPage(items=[_problem_read(row) for row in rows], next_cursor=next_cursor)


def _problem_read(row: Any) -> ProblemRead:
    return ProblemRead(
        id=row.id,
        kind=row.kind,
        title=problems.KINDS[row.kind].title,
        entity_type=row.entity_type,
        entity_id=row.entity_id,
        since=row.since,
        correlation_id=row.correlation_id,
        user_id=row.user_id,
        last_event=LastEvent(
            id=row.last_event_id, type=row.last_event_type, occurred_at=row.last_event_at
        ),
        outcome=row.outcome,
        detail=row.detail,
        actions=list(cast(tuple[ActionName, ...], problems.actions_for(row.kind, row.entity_type))),
    )


# --- actions ----------------------------------------------------------------------------


async def request_action(
    session: AsyncSession, caller: Principal, data: ActionCreate, *, now: datetime
) -> tuple[ActionRead, bool]:
    """Record an action for the worker to carry out, and announce it; with an identical
    action (same action and target) pending or succeeded, that one instead, unchanged.
    Returns the action and whether it is new."""
    route = ACTIONS[data.action]
    progress = await repository.get_progress(session, route.target_type, str(data.target_id))
    # The action joins its target's saga: an order's, or for a payment its order's.
    correlation_id = (progress.correlation_id if progress else None) or str(data.target_id)
    for _ in range(3):
        action = await repository.add_action(
            session,
            {
                "id": uuid.uuid4(),
                "action": data.action,
                "target_type": route.target_type,
                "target_id": data.target_id,
                "reason": data.reason,
                "requested_by": caller.subject,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "correlation_id": correlation_id,
                "request_id": current_request_id.get(),
                "traceparent": current_traceparent.get(),
                "created_at": now,
                "updated_at": now,
            },
        )
        if action is not None:
            await _announce(session, action, SupportActionRequested, now)
            log.info(
                "support_action_requested",
                action_id=str(action.id),
                action=action.action,
                target_id=str(action.target_id),
                requested_by=caller.subject,
            )
            return action_read(action), True
        existing = await repository.live_action(session, data.action, data.target_id)
        if existing is not None:
            return action_read(existing), False
        # The identical one failed in between: try to insert again.
    raise RuntimeError("could not record the support action")  # pragma: no cover


async def get_action(session: AsyncSession, action_id: uuid.UUID) -> ActionRead:
    action = await repository.get_action(session, action_id)
    if action is None:
        raise ActionNotFound()
    return action_read(action)


async def list_actions(
    session: AsyncSession,
    page: PageParams,
    *,
    target_id: uuid.UUID | None,
    status: ActionStatus | None,
) -> ActionPage:
    before = None
    if page.cursor:
        created_at, last_id = decode_cursor(page.cursor, 2)
        before = (
            cursor_part(datetime.fromisoformat, created_at),
            cursor_part(uuid.UUID, last_id),
        )
    found = await repository.list_actions(
        session, target_id=target_id, status=status, limit=page.limit + 1, before=before
    )
    rows = found[: page.limit]
    next_cursor = None
    if len(found) > page.limit:
        next_cursor = encode_cursor(rows[-1].created_at.isoformat(), str(rows[-1].id))
    return ActionPage(items=[action_read(row) for row in rows], next_cursor=next_cursor)


async def record_attempt(
    session: AsyncSession,
    action: SupportAction,
    verdict: Verdict,
    *,
    retry: RetryPolicy,
    now: datetime,
) -> ActionStatus:
    """Record what the owning service answered. A transient failure leaves the action
    pending for another try until its tries run out; an answer (or the last try) ends it
    and announces the outcome. Returns the action's status."""
    action.attempts += 1
    action.updated_at = now
    action.response_status = verdict.status
    action.code = verdict.code
    action.detail = verdict.detail
    action.response = verdict.body
    if verdict.outcome == "retry" and action.attempts < retry.attempts:
        action.next_attempt_at = now + retry.wait_after(action.attempts)
        await session.flush()
        return "pending"
    action.status = "succeeded" if verdict.outcome == "succeeded" else "failed"
    action.completed_at = now
    await session.flush()
    await _announce(session, action, SupportActionCompleted, now)
    return cast(ActionStatus, action.status)


async def _announce(
    session: AsyncSession,
    action: SupportAction,
    event: type[SupportActionEvent],
    now: datetime,
) -> None:
    fields: dict[str, Any] = {
        "action_id": action.id,
        "action": action.action,
        "target_type": action.target_type,
        "target_id": action.target_id,
        "reason": action.reason,
        "requested_by": action.requested_by,
        "occurred_at": now,
    }
    if event is SupportActionCompleted:
        fields.update(
            status=action.status,
            response_status=action.response_status,
            code=action.code,
            detail=action.detail,
        )
    await publish_message(
        session,
        event(**fields),
        source=SOURCE,
        key=str(action.target_id),
        correlation_id=action.correlation_id,
        user_id=action.requested_by,
    )


def action_read(action: SupportAction) -> ActionRead:
    outcome = None
    if action.attempts:
        outcome = ActionOutcome(
            status_code=action.response_status,
            code=action.code,
            detail=action.detail,
            body=action.response,
        )
    return ActionRead(
        id=action.id,
        action=cast(ActionName, action.action),
        target_type=action.target_type,
        target_id=action.target_id,
        reason=action.reason,
        status=cast(ActionStatus, action.status),
        requested_by=action.requested_by,
        created_at=action.created_at,
        updated_at=action.updated_at,
        completed_at=action.completed_at,
        attempts=action.attempts,
        outcome=outcome,
    )
