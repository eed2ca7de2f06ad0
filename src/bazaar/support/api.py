"""Support routes (``/api/support``, support and admin only): parse, call the service,
shape the answer."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.responses import JSONResponse
from starlette.background import BackgroundTask

from bazaar.kit.http import DbSession, require_roles
from bazaar.kit.idempotency import JSONBytesResponse
from bazaar.kit.pagination import Page
from bazaar.kit.tokens import Principal
from bazaar.support import problems, service
from bazaar.support.repository import PROBLEM_KINDS, OperationFilters
from bazaar.support.schemas import (
    ActionCreate,
    ActionPage,
    ActionRead,
    ActionStatus,
    OperationPage,
    ProblemPage,
    Timeline,
)
from bazaar.support.settings import SupportSettings
from bazaar.support.worker import ActionWorker

router = APIRouter(prefix="/api/support", tags=["support"])

Staff = Annotated[Principal, Depends(require_roles("support", "admin"))]
EntityId = Annotated[str, Query(min_length=1, max_length=200)]
ProblemKind = Annotated[
    str | None, Query(pattern="^(" + "|".join(PROBLEM_KINDS) + ")$", description="One kind")
]


async def _settings(request: Request) -> SupportSettings:
    settings: SupportSettings = request.app.state.support_settings
    return settings


Settings = Annotated[SupportSettings, Depends(_settings)]


@router.get("/operations", response_model=OperationPage)
async def list_operations(
    _: Staff,
    session: DbSession,
    page: Page,
    user_id: Annotated[str | None, Query(max_length=200)] = None,
    entity_type: Annotated[
        str | None, Query(max_length=50, description="order, payment, auction, item, user, …")
    ] = None,
    entity_id: Annotated[str | None, Query(max_length=200)] = None,
    type: Annotated[
        str | None, Query(max_length=200, description="A CloudEvents type, exactly")
    ] = None,
    correlation_id: Annotated[str | None, Query(max_length=200)] = None,
    since: Annotated[datetime | None, Query(description="At or after (RFC 3339)")] = None,
    until: Annotated[datetime | None, Query(description="Before (RFC 3339)")] = None,
) -> OperationPage:
    """The history of operations from support's own database, newest first."""
    filters = OperationFilters(
        user_id=user_id,
        entity_type=entity_type,
        entity_id=entity_id,
        type=type,
        correlation_id=correlation_id,
        since=_utc(since),
        until=_utc(until),
    )
    return await service.list_operations(session, filters, page)


@router.get("/timeline", response_model=Timeline)
async def get_timeline(
    _: Staff,
    session: DbSession,
    entity_id: EntityId,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Timeline:
    """Everything that happened to one order, auction or payment, and to what it caused
    (an order's payment, an auction's payments), with support's actions on it, in time
    order."""
    return await service.get_timeline(session, entity_id, limit=limit, cursor=cursor)


@router.get("/problems", response_model=ProblemPage)
async def list_problems(
    _: Staff, session: DbSession, page: Page, settings: Settings, kind: ProblemKind = None
) -> ProblemPage:
    """What needs a person, longest-standing first: sagas stuck past their deadline,
    failed settlements, payments of unknown outcome, messages that could not be handled;
    each with what is known and the actions that apply."""
    cutoffs = problems.cutoffs(settings, datetime.now(UTC))
    return await service.list_problems(session, cutoffs, page, kind=kind)


@router.post(
    "/actions",
    response_model=ActionRead,
    status_code=status.HTTP_202_ACCEPTED,
    responses={202: {"description": "Recorded (or the identical pending/succeeded one)"}},
)
async def request_action(
    data: ActionCreate, caller: Staff, session: DbSession, request: Request
) -> JSONResponse:
    """Ask for a corrective action; the owning service carries it out shortly after.
    The same action on the same target while one is pending or succeeded answers that
    one and changes nothing."""
    action, created = await service.request_action(session, caller, data, now=datetime.now(UTC))
    background = None
    worker: ActionWorker | None = getattr(request.app.state, "action_worker", None)
    if created and worker is not None:
        # Background tasks run once the answer is sent, so after the commit the worker
        # must see; otherwise it finds the action at its next poll.
        background = BackgroundTask(_wake, worker)
    return JSONBytesResponse(
        action.model_dump(mode="json"),
        status_code=status.HTTP_202_ACCEPTED,
        headers=None if created else {"Idempotent-Replayed": "true"},
        background=background,
    )


async def _wake(worker: ActionWorker) -> None:
    worker.wake.set()


@router.get("/actions", response_model=ActionPage)
async def list_actions(
    _: Staff,
    session: DbSession,
    page: Page,
    target_id: uuid.UUID | None = None,
    status: ActionStatus | None = None,
) -> ActionPage:
    """Support actions, newest first."""
    return await service.list_actions(session, page, target_id=target_id, status=status)


@router.get("/actions/{action_id}", response_model=ActionRead)
async def get_action(action_id: uuid.UUID, _: Staff, session: DbSession) -> ActionRead:
    """An action and its outcome: what the owning service answered."""
    return await service.get_action(session, action_id)


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)
