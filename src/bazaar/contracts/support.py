"""Support events on ``bazaar.support``: corrective actions asked for and their outcome.

The support desk publishes them so that an action shows in the history like any other
operation (in its target's timeline, under the target's correlation id), and so that
others may react (a notification, an audit export). ``action_id`` identifies the action;
``requested_by`` is the support user or admin who asked, ``reason`` what they wrote.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from bazaar.contracts.base import Message

TOPIC = "bazaar.support"

SupportActionName = Literal[
    "cancel_order", "retry_order", "refund_payment", "cancel_auction", "retry_settlement"
]
TargetType = Literal["order", "payment", "auction"]


class SupportActionEvent(Message):
    TYPE = "bazaar.support.action"
    TOPIC = TOPIC

    action_id: UUID
    action: SupportActionName
    target_type: TargetType
    target_id: UUID
    reason: str
    requested_by: str
    occurred_at: datetime


class SupportActionRequested(SupportActionEvent):
    """A person asked for the action; the owning service has not been asked yet."""

    TYPE = "bazaar.support.action.requested"


class SupportActionCompleted(SupportActionEvent):
    """The owning service answered: ``succeeded`` (it accepted) or ``failed`` (it refused,
    with its problem ``code``, or could not be reached after the last try)."""

    TYPE = "bazaar.support.action.completed"

    status: Literal["succeeded", "failed"]
    response_status: int | None = None
    code: str | None = None
    detail: str | None = None
