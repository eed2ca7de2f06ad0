"""The settlement saga's table and its choice of whom to charge next."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from bazaar.auctions import saga
from bazaar.auctions.saga import Action, Candidate, Standing, Trigger

POLICY = saga.SettlementPolicy(max_sends=3)
ANN, BOB, CAT, DAN = (uuid.UUID(int=n) for n in range(1, 5))


def candidate(bidder: uuid.UUID, amount: int) -> Candidate:
    return Candidate(bidder, amount, uuid.uuid4())


def test_every_standing_and_trigger_has_a_move() -> None:
    for standing in Standing:
        for trigger in Trigger:
            assert (standing, trigger) in saga.TRANSITIONS


@pytest.mark.parametrize(
    ("trigger", "expected"),
    [
        (Trigger.SUCCEEDED, Action.SETTLE),
        (Trigger.FAILED, Action.NEXT_BIDDER),
        (Trigger.PROCESSING, Action.WAIT_LONGER),
        (Trigger.DEADLINE, Action.RESEND),
    ],
)
def test_the_awaited_payment_moves_the_saga(trigger: Trigger, expected: Action) -> None:
    assert saga.decide(trigger, standing=Standing.AWAITED, sends=1, policy=POLICY) is expected


def test_after_the_last_send_a_deadline_gives_up_on_that_bidder() -> None:
    assert (
        saga.decide(Trigger.DEADLINE, standing=Standing.AWAITED, sends=2, policy=POLICY)
        is Action.RESEND
    )
    assert (
        saga.decide(Trigger.DEADLINE, standing=Standing.AWAITED, sends=3, policy=POLICY)
        is Action.GIVE_UP
    )


def test_money_taken_for_a_payment_nobody_waits_for_is_given_back_once() -> None:
    assert (
        saga.decide(Trigger.SUCCEEDED, standing=Standing.STALE, sends=1, policy=POLICY)
        is Action.REFUND
    )
    assert (
        saga.decide(
            Trigger.SUCCEEDED,
            standing=Standing.STALE,
            sends=1,
            policy=POLICY,
            attempt_status=saga.AttemptStatus.REFUNDING,
        )
        is Action.IGNORE
    )
    # A repeated success of the payment the auction settled with changes nothing.
    assert (
        saga.decide(Trigger.SUCCEEDED, standing=Standing.SETTLED, sends=1, policy=POLICY)
        is Action.IGNORE
    )


def test_standing_of_a_payment() -> None:
    paid, other = uuid.uuid4(), uuid.uuid4()
    assert (
        saga.standing_of(paid, status="closing", awaited_payment_id=paid, settled_payment_id=None)
        is Standing.AWAITED
    )
    assert (
        saga.standing_of(paid, status="closing", awaited_payment_id=other, settled_payment_id=None)
        is Standing.STALE
    )
    assert (
        saga.standing_of(paid, status="settled", awaited_payment_id=None, settled_payment_id=paid)
        is Standing.SETTLED
    )
    assert (
        saga.standing_of(paid, status="cancelled", awaited_payment_id=None, settled_payment_id=None)
        is Standing.STALE
    )


def test_the_next_candidate_is_the_highest_untried_bidder_meeting_the_reserve() -> None:
    best = [candidate(ANN, 5000), candidate(BOB, 4000), candidate(CAT, 3000), candidate(DAN, 900)]
    assert saga.next_candidate(best, tried=set(), reserve_price=None) == best[0]
    assert saga.next_candidate(best, tried={ANN}, reserve_price=None) == best[1]
    assert saga.next_candidate(best, tried={ANN, BOB}, reserve_price=3500) is None
    assert saga.next_candidate(best, tried={ANN, BOB, CAT}, reserve_price=None) == best[3]
    assert saga.next_candidate([], tried=set(), reserve_price=None) is None


# --- support's retry ------------------------------------------------------------------

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def retry(
    status: str, reason: str | None = None, *, awaited_for: timedelta | None = None
) -> saga.RetryMove:
    return saga.retry_move(
        status=status,
        status_reason=reason,
        awaited_since=None if awaited_for is None else NOW - awaited_for,
        now=NOW,
        policy=POLICY,
    )


def test_an_auction_nobody_could_pay_for_gets_a_new_round() -> None:
    assert retry("unsold", "no_payable_bidder") is saga.RetryMove.NEW_ROUND


def test_a_charge_past_its_deadline_is_given_up_for_a_new_round() -> None:
    overdue = POLICY.charge_timeout + timedelta(seconds=1)
    assert retry("closing", awaited_for=overdue) is saga.RetryMove.RESTART
    assert retry("closing", awaited_for=POLICY.charge_timeout) is saga.RetryMove.RESTART


def test_a_settlement_still_within_its_deadline_is_left_alone() -> None:
    assert retry("closing", awaited_for=timedelta(seconds=1)) is saga.RetryMove.REFUSE


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("settled", None),
        ("cancelled", "support_action"),
        ("cancelled", "seller_request"),
        ("unsold", "no_bids"),
        ("unsold", "reserve_not_met"),
        ("open", None),
        ("scheduled", None),
    ],
)
def test_nothing_else_is_retried(status: str, reason: str | None) -> None:
    assert retry(status, reason) is saga.RetryMove.REFUSE


def test_every_retryable_state_is_in_the_table() -> None:
    assert set(saga.RETRY_MOVES) == {("unsold", "no_payable_bidder"), ("closing", None)}


def test_rounds_start_at_one_and_only_the_current_round_counts_as_tried() -> None:
    assert saga.current_round([]) == 1
    assert saga.current_round([1, 1, 2, 2]) == 2
    best = [candidate(ANN, 5000), candidate(BOB, 4000)]
    # Round 1 tried both; round 2 tried nobody yet: the highest bidder is first again.
    assert saga.next_candidate(best, tried=set(), reserve_price=None) == best[0]


def test_a_round_charges_a_buy_now_buyer_the_buy_now_price_again() -> None:
    bids = [candidate(ANN, 3000), candidate(BOB, 2000)]
    buy_now = candidate(CAT, 8000)
    pool = saga.round_candidates(bids, [buy_now, bids[0]])
    assert sorted(pool, key=lambda c: -c.amount) == [buy_now, *bids]
    assert saga.next_candidate(pool, tried=set(), reserve_price=None) == buy_now
    assert saga.next_candidate(pool, tried={CAT}, reserve_price=None) == bids[0]
