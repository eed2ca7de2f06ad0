"""The order saga, as data: its steps, what moves it, and what each move sends.

Orders orchestrates: reserve stock → charge the payment → confirmed. The order is
``confirmed`` as soon as its payment succeeds: the buyer has paid and the stock is
held, and the transaction that confirms it also sends the catalog ``CommitStock``.
The saga stays in ``committing`` until the catalog answers, re-sending the commit past
its deadline; the hold it asked for outlasts every try (the settings refuse less), so
a commit is only ever refused when the catalog was gone longer than the hold and the
units were sold meanwhile: then the confirmed order is refunded (``cancelling``, then
``cancelled`` with reason ``timeout``), as a cancel of a confirmed order is.
Confirming at the payment takes the commit's round trip (a command, the catalog's
transaction and its answer) off the time a buyer waits for ``confirmed``.

Compensation runs backwards: refund (or void) the payment, then release the stock,
then cancelled. Each step but the two ends waits for one answer and has one command
it (re)sends and a deadline; past the deadline the command is sent again (every
receiver is idempotent), and after the step's last try the saga compensates (forward
steps, reason ``timeout``) or moves on (compensation steps, so a cancellation always
completes).

Everything here is pure: :func:`decide` takes the saga's state and what happened,
and returns the new state with the commands and events to publish, or ``None`` when
the trigger means nothing in that step (a late or duplicate answer changes
nothing). :mod:`bazaar.orders.service` turns decisions into rows and outbox messages.

::

    reserving  --StockReserved-->      charging   (refused: cancelled, out_of_stock)
    charging   --PaymentSucceeded-->   committing, status confirmed (OrderConfirmed)
                                                  (failed: releasing, payment_declined|failed)
    committing --StockCommitted-->     confirmed  (the saga's end; no new event)
    reserving            --cancel|timeout--> releasing
    charging             --cancel|timeout--> refunding
    committing, confirmed --cancel|timeout--> refunding  (status: cancelling)
    refunding  --PaymentRefunded|PaymentCancelled--> releasing
    releasing  --StockReleased-->      cancelled
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Literal

CancelReason = Literal[
    "out_of_stock",
    "payment_declined",
    "payment_failed",
    "user_request",
    "support_action",
    "timeout",
]
OrderStatus = Literal["pending", "confirmed", "cancelling", "cancelled"]


class Step(StrEnum):
    RESERVING = "reserving"
    CHARGING = "charging"
    COMMITTING = "committing"
    CONFIRMED = "confirmed"
    REFUNDING = "refunding"
    RELEASING = "releasing"
    CANCELLED = "cancelled"


class Trigger(StrEnum):
    STOCK_RESERVED = "stock_reserved"
    STOCK_REFUSED = "stock_refused"
    PAYMENT_SUCCEEDED = "payment_succeeded"
    PAYMENT_DECLINED = "payment_declined"
    PAYMENT_FAILED = "payment_failed"
    STOCK_COMMITTED = "stock_committed"
    # The payment was refunded, or voided before any money was taken.
    PAYMENT_RETURNED = "payment_returned"
    STOCK_RELEASED = "stock_released"
    CANCEL_BY_USER = "cancel_by_user"
    CANCEL_BY_SUPPORT = "cancel_by_support"
    DEADLINE_PASSED = "deadline_passed"
    # Support asks the saga to try again (``POST /api/orders/{id}/retry``).
    RETRY = "retry"


class Command(StrEnum):
    RESERVE_STOCK = "reserve_stock"
    CHARGE_PAYMENT = "charge_payment"
    COMMIT_STOCK = "commit_stock"
    CANCEL_PAYMENT = "cancel_payment"
    RELEASE_STOCK = "release_stock"


class Event(StrEnum):
    CONFIRMED = "confirmed"
    CANCELLATION_REQUESTED = "cancellation_requested"
    CANCELLED = "cancelled"
    STEP_TIMED_OUT = "step_timed_out"


TERMINAL: frozenset[Step] = frozenset({Step.CONFIRMED, Step.CANCELLED})
COMPENSATING: frozenset[Step] = frozenset({Step.REFUNDING, Step.RELEASING})

# What each waiting step sends on entry and again past its deadline.
STEP_COMMAND: Mapping[Step, Command] = {
    Step.RESERVING: Command.RESERVE_STOCK,
    Step.CHARGING: Command.CHARGE_PAYMENT,
    Step.COMMITTING: Command.COMMIT_STOCK,
    Step.REFUNDING: Command.CANCEL_PAYMENT,
    Step.RELEASING: Command.RELEASE_STOCK,
}

# Cancelled orders support may start again: the platform gave up, not a person.
RETRYABLE_REASONS: frozenset[str] = frozenset(
    {"out_of_stock", "payment_declined", "payment_failed", "timeout"}
)
FORWARD: frozenset[Step] = frozenset({Step.RESERVING, Step.CHARGING, Step.COMMITTING})

# Payment failure codes that are the buyer's card saying no (else: payment_failed).
DECLINE_CODES: frozenset[str] = frozenset({"card_declined", "insufficient_funds", "expired_card"})

CANCEL_REASONS: Mapping[Trigger, CancelReason] = {
    Trigger.CANCEL_BY_USER: "user_request",
    Trigger.CANCEL_BY_SUPPORT: "support_action",
}


@dataclass(frozen=True, slots=True)
class Transition:
    """Go to ``to``; ``reason`` is why the order will end cancelled (kept if already set)."""

    to: Step
    reason: CancelReason | None = None


def _answers() -> dict[tuple[Step, Trigger], Transition]:
    table = {
        (Step.RESERVING, Trigger.STOCK_RESERVED): Transition(Step.CHARGING),
        # Nothing was held, so nothing needs giving back.
        (Step.RESERVING, Trigger.STOCK_REFUSED): Transition(Step.CANCELLED, "out_of_stock"),
        (Step.CHARGING, Trigger.PAYMENT_SUCCEEDED): Transition(Step.COMMITTING),
        # A failed payment took no money: only the stock goes back.
        (Step.CHARGING, Trigger.PAYMENT_DECLINED): Transition(Step.RELEASING, "payment_declined"),
        (Step.CHARGING, Trigger.PAYMENT_FAILED): Transition(Step.RELEASING, "payment_failed"),
        (Step.COMMITTING, Trigger.STOCK_COMMITTED): Transition(Step.CONFIRMED),
        (Step.REFUNDING, Trigger.PAYMENT_RETURNED): Transition(Step.RELEASING),
        # The charge we were cancelling ended failed: nothing to give back either.
        (Step.REFUNDING, Trigger.PAYMENT_FAILED): Transition(Step.RELEASING),
        (Step.REFUNDING, Trigger.PAYMENT_DECLINED): Transition(Step.RELEASING),
        (Step.RELEASING, Trigger.STOCK_RELEASED): Transition(Step.CANCELLED),
    }
    # A cancel request: a charge may have been asked for once the saga reached charging.
    cancel_to = {
        Step.RESERVING: Step.RELEASING,
        Step.CHARGING: Step.REFUNDING,
        Step.COMMITTING: Step.REFUNDING,
        Step.CONFIRMED: Step.REFUNDING,
    }
    for trigger, reason in CANCEL_REASONS.items():
        for step, to in cancel_to.items():
            table[(step, trigger)] = Transition(to, reason)
    return table


TRANSITIONS: Mapping[tuple[Step, Trigger], Transition] = _answers()

# After a step's last try: forward steps compensate; compensation steps move on, so a
# cancellation completes even when a service never answers (held stock still comes
# back by itself when the catalog's hold expires).
ON_LAST_DEADLINE: Mapping[Step, Transition] = {
    Step.RESERVING: Transition(Step.RELEASING, "timeout"),
    Step.CHARGING: Transition(Step.REFUNDING, "timeout"),
    Step.COMMITTING: Transition(Step.REFUNDING, "timeout"),
    Step.REFUNDING: Transition(Step.RELEASING),
    Step.RELEASING: Transition(Step.CANCELLED),
}


@dataclass(frozen=True, slots=True)
class StepTiming:
    """How long one try of a step waits for its answer, and how many tries it gets."""

    deadline_seconds: float
    attempts: int


SagaTimings = Mapping[Step, StepTiming]


@dataclass(frozen=True, slots=True)
class SagaState:
    step: Step
    status: OrderStatus
    attempts: int = 0
    cancel_reason: CancelReason | None = None
    charge_requested: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    """The saga's next state, what to send, and when the new step's deadline falls
    (``deadline_seconds`` from now; ``None`` for the two ends)."""

    state: SagaState
    commands: tuple[Command, ...] = ()
    events: tuple[Event, ...] = ()
    deadline_seconds: float | None = None


def payment_failure_trigger(failure_code: str) -> Trigger:
    return Trigger.PAYMENT_DECLINED if failure_code in DECLINE_CODES else Trigger.PAYMENT_FAILED


def start(timings: SagaTimings) -> Decision:
    """A new order: reserve its stock."""
    return _enter(SagaState(Step.RESERVING, "pending"), Transition(Step.RESERVING), timings, ())


def decide(state: SagaState, trigger: Trigger, timings: SagaTimings) -> Decision | None:
    """What ``trigger`` does to a saga in ``state``; ``None``: nothing (ignore it)."""
    if trigger is Trigger.DEADLINE_PASSED:
        return _on_deadline(state, timings)
    if trigger is Trigger.RETRY:
        return _on_retry(state, timings)
    transition = TRANSITIONS.get((state.step, trigger))
    if transition is None:
        return None
    events = (Event.CANCELLATION_REQUESTED,) if trigger in CANCEL_REASONS else ()
    return _enter(state, transition, timings, events)


def _on_deadline(state: SagaState, timings: SagaTimings) -> Decision | None:
    if state.step in TERMINAL:
        return None
    timing = timings[state.step]
    if state.attempts < timing.attempts:
        return Decision(
            state=replace(state, attempts=state.attempts + 1),
            commands=(STEP_COMMAND[state.step],),
            events=(Event.STEP_TIMED_OUT,),
            deadline_seconds=timing.deadline_seconds,
        )
    return _enter(state, ON_LAST_DEADLINE[state.step], timings, ())


def _on_retry(state: SagaState, timings: SagaTimings) -> Decision | None:
    """A pending order's current step is sent again now, with all its tries back; an order
    the platform cancelled (no stock, the payment failed, a step timed out) starts over
    from reserving, with a new reservation and a new payment. Anything else, a confirmed
    order among them (its commit re-sends itself): ``None``."""
    if state.step in FORWARD and state.status == "pending":
        return Decision(
            state=replace(state, attempts=1),
            commands=(STEP_COMMAND[state.step],),
            deadline_seconds=timings[state.step].deadline_seconds,
        )
    if state.step is Step.CANCELLED and state.cancel_reason in RETRYABLE_REASONS:
        fresh = SagaState(Step.RESERVING, "pending")
        return _enter(fresh, Transition(Step.RESERVING), timings, ())
    return None


def _enter(
    state: SagaState, transition: Transition, timings: SagaTimings, events: tuple[Event, ...]
) -> Decision:
    to = transition.to
    if to is Step.REFUNDING and not state.charge_requested:
        to = Step.RELEASING  # no charge was ever asked for: nothing to refund
    reason = state.cancel_reason or transition.reason
    new = SagaState(
        step=to,
        status=_status(to, state.status),
        attempts=1 if to in STEP_COMMAND else 0,
        cancel_reason=reason,
        charge_requested=state.charge_requested or to is Step.CHARGING,
    )
    if new.status == "confirmed" and state.status != "confirmed":
        events = (*events, Event.CONFIRMED)
    elif to is Step.CANCELLED:
        events = (*events, Event.CANCELLED)
    command = STEP_COMMAND.get(to)
    return Decision(
        state=new,
        commands=(command,) if command else (),
        events=events,
        deadline_seconds=timings[to].deadline_seconds if command else None,
    )


def _status(step: Step, current: OrderStatus) -> OrderStatus:
    """The public status: an order is ``confirmed`` once paid (its stock's commit may
    still be on its way); a confirmed order being undone is ``cancelling``; a pending
    one stays ``pending`` until it is ``cancelled``."""
    if step in (Step.COMMITTING, Step.CONFIRMED):
        return "confirmed"
    if step is Step.CANCELLED:
        return "cancelled"
    if step in COMPENSATING and current in ("confirmed", "cancelling"):
        return "cancelling"
    return "pending"
