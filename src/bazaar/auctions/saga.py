"""The settlement saga, as data: its steps, what moves it, and whom it charges next.

Orchestrated by auctions, its state kept on the auction row (``status = 'closing'``,
the payment waited for, sends, deadline) and in ``settlement_attempts``:

    open ──close──▶ closing ──PaymentSucceeded──▶ settled
                      │  ▲
      PaymentFailed / │  │ the next eligible bidder (distinct, at their own highest
      gave up after   │  │ bid, meeting the reserve): a new ChargePayment
      max sends       ▼  │
                   (nobody left) ──▶ unsold

A ChargePayment that goes unanswered past its deadline is sent again with the same
``payment_id`` (payments is idempotent on it); after ``max_sends`` the saga gives up on
that payment, asks payments to cancel it (should it still go through) and moves on. An
outcome for a payment the saga no longer waits for changes nothing, except that money
taken for it is given back.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class Trigger(StrEnum):
    """What can happen to a charge."""

    SUCCEEDED = "payment_succeeded"
    FAILED = "payment_failed"
    PROCESSING = "payment_processing"
    DEADLINE = "deadline_passed"


class Action(StrEnum):
    SETTLE = "settle"  # the winner paid: settled
    NEXT_BIDDER = "next_bidder"  # charge the next eligible bidder, or unsold if none
    RESEND = "resend"  # send the same ChargePayment again, wait another timeout
    WAIT_LONGER = "wait_longer"  # payments is on it: wait the processing timeout
    GIVE_UP = "give_up"  # cancel this payment, then as NEXT_BIDDER
    REFUND = "refund"  # money taken for a payment no longer wanted: cancel (refund) it
    IGNORE = "ignore"


class AttemptStatus(StrEnum):
    CHARGING = "charging"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABANDONED = "abandoned"  # gave up waiting; a CancelPayment went out
    REFUNDING = "refunding"  # it succeeded when no longer wanted; a CancelPayment went out
    CANCELLED = "cancelled"  # the auction was cancelled while it was charging


class UnsoldReason(StrEnum):
    NO_BIDS = "no_bids"
    RESERVE_NOT_MET = "reserve_not_met"
    NO_PAYABLE_BIDDER = "no_payable_bidder"


class Standing(StrEnum):
    """Where a payment stands in its auction's saga."""

    AWAITED = "awaited"  # the charge the saga is waiting for
    SETTLED = "settled"  # the charge the auction settled with
    STALE = "stale"  # superseded, abandoned, or its auction was cancelled


# The saga's moves, as a table: (where the payment stands, what happened) -> action.
# DEADLINE on the awaited payment becomes GIVE_UP once max_sends went out (decide()).
TRANSITIONS: dict[tuple[Standing, Trigger], Action] = {
    (Standing.AWAITED, Trigger.SUCCEEDED): Action.SETTLE,
    (Standing.AWAITED, Trigger.FAILED): Action.NEXT_BIDDER,
    (Standing.AWAITED, Trigger.PROCESSING): Action.WAIT_LONGER,
    (Standing.AWAITED, Trigger.DEADLINE): Action.RESEND,
    (Standing.SETTLED, Trigger.SUCCEEDED): Action.IGNORE,  # a repeated outcome
    (Standing.SETTLED, Trigger.FAILED): Action.IGNORE,
    (Standing.SETTLED, Trigger.PROCESSING): Action.IGNORE,
    (Standing.SETTLED, Trigger.DEADLINE): Action.IGNORE,
    (Standing.STALE, Trigger.SUCCEEDED): Action.REFUND,  # money nobody wants any more
    (Standing.STALE, Trigger.FAILED): Action.IGNORE,
    (Standing.STALE, Trigger.PROCESSING): Action.IGNORE,
    (Standing.STALE, Trigger.DEADLINE): Action.IGNORE,
}

# The status an attempt takes from each move.
ATTEMPT_STATUS_AFTER: dict[Action, AttemptStatus] = {
    Action.SETTLE: AttemptStatus.SUCCEEDED,
    Action.NEXT_BIDDER: AttemptStatus.FAILED,
    Action.WAIT_LONGER: AttemptStatus.PROCESSING,
    Action.GIVE_UP: AttemptStatus.ABANDONED,
    Action.REFUND: AttemptStatus.REFUNDING,
}


class RetryMove(StrEnum):
    """What support's retry does to an auction."""

    NEW_ROUND = "new_round"  # unsold, nobody could pay: charge the bidders again, highest first
    RESTART = "restart"  # closing, its charge past its deadline: give that charge up, new round
    REFUSE = "refuse"  # nothing to retry: settled, cancelled, still open, or unsold for good


# Support's retry, as a table: (status, status_reason) -> move. Whatever is not here is
# refused: settled and cancelled auctions, open and scheduled ones, and those unsold for
# no bids or a reserve not met (a new round would find nobody to charge).
RETRY_MOVES: dict[tuple[str, str | None], RetryMove] = {
    ("unsold", UnsoldReason.NO_PAYABLE_BIDDER): RetryMove.NEW_ROUND,
    ("closing", None): RetryMove.RESTART,
}


@dataclass(frozen=True, slots=True)
class SettlementPolicy:
    charge_timeout: timedelta = timedelta(seconds=30)
    processing_timeout: timedelta = timedelta(seconds=120)
    max_sends: int = 5


def standing_of(
    payment_id: uuid.UUID,
    *,
    status: str,
    awaited_payment_id: uuid.UUID | None,
    settled_payment_id: uuid.UUID | None,
) -> Standing:
    if status == "closing" and payment_id == awaited_payment_id:
        return Standing.AWAITED
    if status == "settled" and payment_id == settled_payment_id:
        return Standing.SETTLED
    return Standing.STALE


def decide(
    trigger: Trigger,
    *,
    standing: Standing,
    sends: int,
    policy: SettlementPolicy,
    attempt_status: str | None = None,
) -> Action:
    """The saga's move when ``trigger`` happens to a payment (``sends``: how often the
    awaited payment's ChargePayment went out; ``attempt_status``: the payment's attempt)."""
    action = TRANSITIONS[(standing, trigger)]
    if action is Action.RESEND and sends >= policy.max_sends:
        return Action.GIVE_UP
    if action is Action.REFUND and attempt_status == AttemptStatus.REFUNDING:
        return Action.IGNORE  # its refund was asked for already
    return action


@dataclass(frozen=True, slots=True)
class Candidate:
    """A bidder the saga may charge: at their own highest bid, with the method they bid with."""

    bidder_id: uuid.UUID
    amount: int
    payment_method_id: uuid.UUID


def next_candidate(
    best_bids: Iterable[Candidate], *, tried: set[uuid.UUID], reserve_price: int | None
) -> Candidate | None:
    """The highest bidder not tried yet whose own highest bid meets the reserve.

    ``best_bids`` holds each bidder's highest bid. Accepted amounts are strictly
    increasing, so two bidders never share one and the choice is unambiguous.
    """
    eligible = [
        candidate
        for candidate in best_bids
        if candidate.bidder_id not in tried
        and (reserve_price is None or candidate.amount >= reserve_price)
    ]
    return max(eligible, key=lambda candidate: candidate.amount, default=None)


def retry_move(
    *,
    status: str,
    status_reason: str | None,
    awaited_since: datetime | None,
    now: datetime,
    policy: SettlementPolicy,
) -> RetryMove:
    """Support's retry of an auction's settlement (``awaited_since``: when the charge the
    saga waits for was first sent, for a closing auction). A closing auction is retried
    only once its charge is past its first deadline: before that the saga is on time."""
    move = RETRY_MOVES.get((status, status_reason), RetryMove.REFUSE)
    if (
        move is RetryMove.RESTART
        and awaited_since is not None
        and now - awaited_since < policy.charge_timeout
    ):
        return RetryMove.REFUSE
    return move


def current_round(rounds: Iterable[int]) -> int:
    """The round the saga is in, from its attempts' rounds (1 before any attempt)."""
    return max(rounds, default=1)


def round_candidates(
    best_bids: Iterable[Candidate], attempted: Iterable[Candidate]
) -> list[Candidate]:
    """Whom a round may charge: each bidder once, at the highest amount they bid or were
    charged before (a buy-now buyer is charged the buy-now price again, not a bid)."""
    chosen: dict[uuid.UUID, Candidate] = {}
    for candidate in (*best_bids, *attempted):
        known = chosen.get(candidate.bidder_id)
        if known is None or candidate.amount > known.amount:
            chosen[candidate.bidder_id] = candidate
    return list(chosen.values())
