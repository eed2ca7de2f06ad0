"""The order saga's transitions, as data: pure tests of :func:`bazaar.orders.saga.decide`."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from bazaar.orders import saga
from bazaar.orders.saga import (
    Command,
    Decision,
    Event,
    SagaState,
    Step,
    StepTiming,
    Trigger,
    decide,
)
from bazaar.orders.settings import OrdersSettings

TIMINGS: saga.SagaTimings = {
    Step.RESERVING: StepTiming(10, 3),
    Step.CHARGING: StepTiming(30, 6),
    Step.COMMITTING: StepTiming(10, 2),
    Step.REFUNDING: StepTiming(30, 4),
    Step.RELEASING: StepTiming(10, 2),
}
ANSWERS = [t for t in Trigger if t not in (Trigger.DEADLINE_PASSED, Trigger.RETRY)]
CANCELS = (Trigger.CANCEL_BY_USER, Trigger.CANCEL_BY_SUPPORT)


def run(*triggers: Trigger, state: SagaState | None = None) -> Decision:
    """The saga from its start (or ``state``) through ``triggers``; each must move it."""
    decision = saga.start(TIMINGS) if state is None else Decision(state)
    for trigger in triggers:
        moved = decide(decision.state, trigger, TIMINGS)
        assert moved is not None, f"{trigger} did nothing in {decision.state.step}"
        decision = moved
    return decision


def at(step: Step) -> SagaState:
    """A saga that just entered ``step`` on the usual path."""
    paths = {
        Step.RESERVING: (),
        Step.CHARGING: (Trigger.STOCK_RESERVED,),
        Step.COMMITTING: (Trigger.STOCK_RESERVED, Trigger.PAYMENT_SUCCEEDED),
        Step.CONFIRMED: (
            Trigger.STOCK_RESERVED,
            Trigger.PAYMENT_SUCCEEDED,
            Trigger.STOCK_COMMITTED,
        ),
        Step.REFUNDING: (Trigger.STOCK_RESERVED, Trigger.CANCEL_BY_USER),
        Step.RELEASING: (Trigger.STOCK_RESERVED, Trigger.PAYMENT_DECLINED),
        Step.CANCELLED: (Trigger.STOCK_REFUSED,),
    }
    return run(*paths[step]).state


def test_a_new_order_reserves_its_stock() -> None:
    started = saga.start(TIMINGS)
    assert started.state == SagaState(Step.RESERVING, "pending", attempts=1)
    assert started.commands == (Command.RESERVE_STOCK,)
    assert started.deadline_seconds == 10


def test_the_happy_path_reserves_charges_and_confirms_then_commits() -> None:
    charging = run(Trigger.STOCK_RESERVED)
    assert charging.state.step is Step.CHARGING and charging.state.charge_requested
    assert charging.commands == (Command.CHARGE_PAYMENT,)
    assert charging.events == ()
    assert charging.state.status == "pending"
    assert charging.deadline_seconds == 30

    # Paid: the order is confirmed in the move that sends the stock's commit.
    committing = run(Trigger.PAYMENT_SUCCEEDED, state=charging.state)
    assert committing.state.step is Step.COMMITTING
    assert committing.state.status == "confirmed"
    assert committing.commands == (Command.COMMIT_STOCK,)
    assert committing.events == (Event.CONFIRMED,)
    assert committing.deadline_seconds == 10

    # The catalog's answer ends the saga; the order was confirmed already.
    done = run(Trigger.STOCK_COMMITTED, state=committing.state)
    assert done.state.step is Step.CONFIRMED
    assert done.state.status == "confirmed"
    assert done.events == ()
    assert done.commands == ()
    assert done.deadline_seconds is None


@pytest.mark.parametrize("step", [Step.COMMITTING, Step.CONFIRMED])
def test_a_confirmed_order_is_not_confirmed_twice(step: Step) -> None:
    """Re-sent commits past their deadline, and the commit's answer, say nothing new."""
    state = at(step)
    again = decide(state, Trigger.DEADLINE_PASSED, TIMINGS)
    if again is not None:
        assert again.events == (Event.STEP_TIMED_OUT,)
        assert again.state.status == "confirmed"
    assert decide(state, Trigger.PAYMENT_SUCCEEDED, TIMINGS) is None


def test_out_of_stock_cancels_at_once_without_compensation() -> None:
    refused = run(Trigger.STOCK_REFUSED)
    assert refused.state.step is Step.CANCELLED
    assert refused.state.status == "cancelled"
    assert refused.state.cancel_reason == "out_of_stock"
    assert refused.commands == ()
    assert refused.events == (Event.CANCELLED,)


@pytest.mark.parametrize(
    ("failure_code", "reason"),
    [
        ("card_declined", "payment_declined"),
        ("insufficient_funds", "payment_declined"),
        ("expired_card", "payment_declined"),
        ("processing_error", "payment_failed"),
        ("payment_method_invalid", "payment_failed"),
    ],
)
def test_a_failed_payment_releases_the_stock_and_says_why(failure_code: str, reason: str) -> None:
    trigger = saga.payment_failure_trigger(failure_code)
    failed = run(trigger, state=at(Step.CHARGING))
    assert failed.state.step is Step.RELEASING
    assert failed.commands == (Command.RELEASE_STOCK,)  # no money was taken: no refund
    cancelled = run(Trigger.STOCK_RELEASED, state=failed.state)
    assert cancelled.state.status == "cancelled"
    assert cancelled.state.cancel_reason == reason
    assert cancelled.events == (Event.CANCELLED,)


@pytest.mark.parametrize(
    ("step", "first_command"),
    [
        (Step.RESERVING, Command.RELEASE_STOCK),
        (Step.CHARGING, Command.CANCEL_PAYMENT),
    ],
)
@pytest.mark.parametrize(
    ("trigger", "reason"),
    [(Trigger.CANCEL_BY_USER, "user_request"), (Trigger.CANCEL_BY_SUPPORT, "support_action")],
)
def test_cancelling_a_pending_order_compensates_what_was_done(
    step: Step, first_command: Command, trigger: Trigger, reason: str
) -> None:
    asked = run(trigger, state=at(step))
    assert asked.commands == (first_command,)
    assert asked.events == (Event.CANCELLATION_REQUESTED,)
    assert asked.state.status == "pending"  # a pending order stays pending until cancelled
    rest = [Trigger.STOCK_RELEASED]
    if first_command is Command.CANCEL_PAYMENT:
        rest.insert(0, Trigger.PAYMENT_RETURNED)
    done = run(*rest, state=asked.state)
    assert done.state.status == "cancelled"
    assert done.state.cancel_reason == reason


@pytest.mark.parametrize("step", [Step.COMMITTING, Step.CONFIRMED])
def test_cancelling_a_confirmed_order_refunds_then_restocks(step: Step) -> None:
    """Whether or not the catalog has answered the commit yet."""
    asked = run(Trigger.CANCEL_BY_USER, state=at(step))
    assert asked.state.status == "cancelling"
    assert asked.commands == (Command.CANCEL_PAYMENT,)
    refunded = run(Trigger.PAYMENT_RETURNED, state=asked.state)
    assert refunded.state.status == "cancelling"
    assert refunded.commands == (Command.RELEASE_STOCK,)
    done = run(Trigger.STOCK_RELEASED, state=refunded.state)
    assert done.state.status == "cancelled"
    assert done.state.cancel_reason == "user_request"
    assert done.events == (Event.CANCELLED,)


@pytest.mark.parametrize("step", [Step.REFUNDING, Step.RELEASING, Step.CANCELLED])
@pytest.mark.parametrize("trigger", CANCELS)
def test_a_cancel_request_during_or_after_compensation_changes_nothing(
    step: Step, trigger: Trigger
) -> None:
    assert decide(at(step), trigger, TIMINGS) is None


def test_a_failed_charge_being_cancelled_needs_no_refund() -> None:
    refunding = at(Step.REFUNDING)
    assert run(Trigger.PAYMENT_FAILED, state=refunding).state.step is Step.RELEASING


@pytest.mark.parametrize("step", list(Step))
@pytest.mark.parametrize("trigger", ANSWERS)
def test_only_the_answer_a_step_waits_for_moves_it(step: Step, trigger: Trigger) -> None:
    """Late and duplicate answers (for a step already left) change nothing."""
    expected = {
        Step.RESERVING: {Trigger.STOCK_RESERVED, Trigger.STOCK_REFUSED, *CANCELS},
        Step.CHARGING: {
            Trigger.PAYMENT_SUCCEEDED,
            Trigger.PAYMENT_DECLINED,
            Trigger.PAYMENT_FAILED,
            *CANCELS,
        },
        Step.COMMITTING: {Trigger.STOCK_COMMITTED, *CANCELS},
        Step.CONFIRMED: set(CANCELS),
        Step.REFUNDING: {
            Trigger.PAYMENT_RETURNED,
            Trigger.PAYMENT_FAILED,
            Trigger.PAYMENT_DECLINED,
        },
        Step.RELEASING: {Trigger.STOCK_RELEASED},
        Step.CANCELLED: set(),
    }
    moved = decide(at(step), trigger, TIMINGS)
    assert (moved is not None) == (trigger in expected[step])


@pytest.mark.parametrize(
    "step", [Step.RESERVING, Step.CHARGING, Step.COMMITTING, Step.REFUNDING, Step.RELEASING]
)
def test_a_step_past_its_deadline_sends_its_command_again_until_its_last_try(
    step: Step,
) -> None:
    state = at(step)
    assert state.attempts == 1
    for attempt in range(2, TIMINGS[step].attempts + 1):
        again = decide(state, Trigger.DEADLINE_PASSED, TIMINGS)
        assert again is not None
        assert again.state.step is step
        assert again.state.attempts == attempt
        assert again.commands == (saga.STEP_COMMAND[step],)
        assert again.events == (Event.STEP_TIMED_OUT,)
        assert again.deadline_seconds == TIMINGS[step].deadline_seconds
        state = again.state
    last = decide(state, Trigger.DEADLINE_PASSED, TIMINGS)
    assert last is not None
    assert last.state.step is not step


@pytest.mark.parametrize(
    ("step", "then", "command", "status"),
    [
        (Step.RESERVING, Step.RELEASING, Command.RELEASE_STOCK, "pending"),
        # The charge may have gone through after all: cancel (void or refund) it.
        (Step.CHARGING, Step.REFUNDING, Command.CANCEL_PAYMENT, "pending"),
        # The units are gone (the catalog never answered the commit): refund the buyer.
        (Step.COMMITTING, Step.REFUNDING, Command.CANCEL_PAYMENT, "cancelling"),
    ],
)
def test_a_forward_step_out_of_tries_compensates_with_reason_timeout(
    step: Step, then: Step, command: Command, status: str
) -> None:
    state = replace(at(step), attempts=TIMINGS[step].attempts)
    timed_out = decide(state, Trigger.DEADLINE_PASSED, TIMINGS)
    assert timed_out is not None
    assert timed_out.state.step is then
    assert timed_out.commands == (command,)
    assert timed_out.state.cancel_reason == "timeout"
    assert timed_out.state.status == status


def test_compensation_out_of_tries_still_ends_cancelled_with_the_first_reason() -> None:
    state = run(Trigger.CANCEL_BY_SUPPORT, state=at(Step.CONFIRMED)).state
    for _ in range(TIMINGS[Step.REFUNDING].attempts + TIMINGS[Step.RELEASING].attempts):
        moved = decide(state, Trigger.DEADLINE_PASSED, TIMINGS)
        assert moved is not None
        state = moved.state
    assert state.step is Step.CANCELLED
    assert state.cancel_reason == "support_action"
    assert decide(state, Trigger.DEADLINE_PASSED, TIMINGS) is None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(list(Trigger)), max_size=30))
def test_any_history_ends_confirmed_or_cancelled_by_deadlines_alone(
    triggers: list[Trigger],
) -> None:
    """Whatever arrives (or not), deadlines alone finish the saga, within its tries, and
    the ends are consistent: confirmed only after a payment and a commit (and announced
    once, at the payment), cancelled always with a reason."""
    state = saga.start(TIMINGS).state
    committed = paid = False
    confirmations = 0
    for trigger in triggers:
        moved = decide(state, trigger, TIMINGS)
        if moved is not None:
            if state.step is Step.CANCELLED:  # support started it over: a new round
                committed = paid = False
                confirmations = 0
            committed |= moved.state.step is Step.CONFIRMED and trigger is Trigger.STOCK_COMMITTED
            paid |= trigger is Trigger.PAYMENT_SUCCEEDED
            confirmations += moved.events.count(Event.CONFIRMED)
            state = moved.state
    budget = sum(timing.attempts for timing in TIMINGS.values())
    for _ in range(budget):
        moved = decide(state, Trigger.DEADLINE_PASSED, TIMINGS)
        if moved is None:
            break
        state = moved.state
        confirmations += moved.events.count(Event.CONFIRMED)
    assert state.step in saga.TERMINAL
    assert confirmations <= 1
    if state.step is Step.CONFIRMED:
        assert committed and paid and confirmations == 1
        assert state.status == "confirmed" and state.cancel_reason is None
    else:
        assert state.status == "cancelled" and state.cancel_reason is not None


def test_the_default_charge_step_outwaits_a_lost_provider_answer() -> None:
    """A payment stays processing 30 s and more while payments asks the provider: the
    charge step keeps asking for two to three minutes before it gives up."""
    charging = OrdersSettings().saga_timings()[Step.CHARGING]
    assert 120 <= charging.deadline_seconds * charging.attempts <= 240
    assert charging.attempts >= 3


def test_a_stock_hold_shorter_than_the_saga_is_refused() -> None:
    with pytest.raises(ValidationError, match="reservation_hold_seconds"):
        OrdersSettings(reservation_hold_seconds=60)


@pytest.mark.parametrize("step", [Step.RESERVING, Step.CHARGING])
def test_a_retry_sends_the_pending_step_again_with_its_tries_back(step: Step) -> None:
    tired = replace(at(step), attempts=TIMINGS[step].attempts)
    retried = decide(tired, Trigger.RETRY, TIMINGS)
    assert retried is not None
    assert retried.state.step is step
    assert retried.state.attempts == 1
    assert retried.commands == (saga.STEP_COMMAND[step],)
    assert retried.deadline_seconds == TIMINGS[step].deadline_seconds


@pytest.mark.parametrize(
    "reason", ["out_of_stock", "payment_declined", "payment_failed", "timeout"]
)
def test_a_retry_starts_an_order_the_platform_cancelled_over(reason: str) -> None:
    cancelled = SagaState(Step.CANCELLED, "cancelled", cancel_reason=reason, charge_requested=True)  # type: ignore[arg-type]
    retried = decide(cancelled, Trigger.RETRY, TIMINGS)
    assert retried is not None
    assert retried.state == SagaState(Step.RESERVING, "pending", attempts=1)
    assert retried.commands == (saga.Command.RESERVE_STOCK,)


@pytest.mark.parametrize(
    "state",
    [
        SagaState(Step.CONFIRMED, "confirmed", charge_requested=True),
        # Confirmed, its commit on the way: the commit step re-sends itself.
        SagaState(Step.COMMITTING, "confirmed", attempts=3, charge_requested=True),
        SagaState(Step.CANCELLED, "cancelled", cancel_reason="user_request"),
        SagaState(Step.CANCELLED, "cancelled", cancel_reason="support_action"),
        SagaState(Step.REFUNDING, "cancelling", attempts=1, cancel_reason="user_request"),
        SagaState(Step.RELEASING, "pending", attempts=1, cancel_reason="payment_declined"),
    ],
)
def test_nothing_else_is_retried(state: SagaState) -> None:
    assert decide(state, Trigger.RETRY, TIMINGS) is None
