"""The support desk's HTTP shapes (API.md, "Support and monitoring")."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

ActionName = Literal[
    "cancel_order", "retry_order", "refund_payment", "cancel_auction", "retry_settlement"
]
ActionStatus = Literal["pending", "succeeded", "failed"]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class OperationRead(BaseModel):
    """One message in the history: what happened, to what, for whom, when, in which saga."""

    id: str
    type: str
    source: str
    entity_type: str | None
    entity_id: str | None
    user_id: str | None
    occurred_at: datetime
    correlation_id: str | None
    trace_id: str | None
    data: dict[str, Any]
    subject: str | None
    topic: str
    partition: int
    offset: int
    recorded_at: datetime


class OperationPage(BaseModel):
    items: list[OperationRead]
    next_cursor: str | None


class Timeline(BaseModel):
    """Everything that happened to ``entity_id`` and what it caused, oldest first."""

    entity_id: str
    related_ids: list[str] = Field(description="What it caused: an order's or auction's payments")
    items: list[OperationRead]
    next_cursor: str | None


class LastEvent(BaseModel):
    id: str
    type: str
    occurred_at: datetime


class ProblemRead(BaseModel):
    id: str
    kind: str
    title: str
    entity_type: str | None
    entity_id: str | None
    since: datetime = Field(description="When the milestone still waiting for an outcome came")
    correlation_id: str | None
    user_id: str | None
    last_event: LastEvent
    outcome: str | None = Field(description="The entity's latest outcome, if it had one")
    detail: dict[str, Any] | None = None
    actions: list[ActionName] = Field(description="Support actions that apply to it")


class ProblemPage(BaseModel):
    items: list[ProblemRead]
    next_cursor: str | None


class ActionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: ActionName
    target_id: uuid.UUID = Field(description="The order, payment or auction to act on")
    reason: Reason = Field(description="Why: kept with the action and shown in the timeline")


class ActionOutcome(BaseModel):
    """What the owning service answered (``status_code`` null: it could not be reached)."""

    status_code: int | None
    code: str | None
    detail: str | None
    body: Any = None


class ActionRead(BaseModel):
    id: uuid.UUID
    action: ActionName
    target_type: str
    target_id: uuid.UUID
    reason: str
    status: ActionStatus
    requested_by: str
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    attempts: int
    outcome: ActionOutcome | None


class ActionPage(BaseModel):
    items: list[ActionRead]
    next_cursor: str | None
