"""What needs a person: the kinds of problem support finds in its history, and which
actions apply to each. The questions themselves are SQL over ``entity_progress`` and
``events`` (:func:`bazaar.support.repository.find_problems`).

A problem is a fact about the history as it stands: a saga past its deadline with no
outcome since, an auction no bidder could pay for, a message that could not be
handled. When the outcome arrives (the order confirmed, the auction settled) the
question no longer matches, and the problem is gone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from prometheus_client import Gauge

from bazaar.support.repository import ProblemCutoffs
from bazaar.support.settings import SupportSettings

PROBLEMS = Gauge(
    "bazaar_support_problems", "Problems in the support history now, by kind", ["kind"]
)


@dataclass(frozen=True, slots=True)
class ProblemKind:
    title: str
    actions: tuple[str, ...]


KINDS: Mapping[str, ProblemKind] = {
    "order_stuck": ProblemKind(
        "An order is still pending past its saga's deadline", ("retry_order", "cancel_order")
    ),
    "cancellation_stuck": ProblemKind(
        "An order's cancellation has not finished past its deadline", ("retry_order",)
    ),
    "settlement_stuck": ProblemKind(
        "An auction's settlement has had no outcome past its deadline",
        ("retry_settlement", "cancel_auction"),
    ),
    "settlement_failed": ProblemKind(
        "An auction went unsold because no bidder could pay",
        ("retry_settlement", "cancel_auction"),
    ),
    "payment_unknown_outcome": ProblemKind(
        "A payment is still processing: its outcome at the provider is unknown",
        ("refund_payment",),
    ),
    "payment_unanswered": ProblemKind(
        "A charge was asked for and payments never answered", ("refund_payment",)
    ),
    # What applies to a dead letter depends on what its message was about.
    "dead_letter": ProblemKind("A message could not be handled and was dead-lettered", ()),
}

ENTITY_ACTIONS: Mapping[str, tuple[str, ...]] = {
    "order": ("retry_order", "cancel_order"),
    "auction": ("retry_settlement", "cancel_auction"),
    "payment": ("refund_payment",),
}


def actions_for(kind: str, entity_type: str | None) -> tuple[str, ...]:
    if kind == "dead_letter":
        return ENTITY_ACTIONS.get(entity_type or "", ())
    return KINDS[kind].actions


def cutoffs(settings: SupportSettings, now: datetime) -> ProblemCutoffs:
    """The moments before which a milestone without an outcome is a problem."""

    def ago(seconds: float) -> datetime:
        return now - timedelta(seconds=seconds)

    return ProblemCutoffs(
        order=ago(settings.order_deadline_seconds),
        cancellation=ago(settings.cancellation_deadline_seconds),
        settlement=ago(settings.settlement_deadline_seconds),
        payment=ago(settings.payment_deadline_seconds),
        dead_letter=ago(settings.dead_letter_window_seconds),
    )


def publish_counts(counts: Mapping[str, int]) -> None:
    """Set the problems gauge (every kind, zeros included, so an alert can clear)."""
    for kind, count in counts.items():
        PROBLEMS.labels(kind).set(count)
