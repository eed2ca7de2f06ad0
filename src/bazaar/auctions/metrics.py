"""The auctions service's Prometheus metrics: bids by outcome, settlements by outcome.

``bazaar_auction_bids_total{outcome, reason, auto}``: every bid decided, ``accepted``
(``auto="true"`` for the platform's proxy bids, ``reason=""``) or ``refused`` with the
refusal's machine code as ``reason`` (``bid_too_low``, ``auction_not_open``,
``own_auction``, ``payment_method_invalid``, …). A repeated request answered from its
Idempotency-Key is not a new bid and is not counted.

``bazaar_auction_settlements_total{outcome, reason}``: ``settled`` (``winner``: the first
charge paid; ``second_chance``: a later bidder of the first round; ``retry``: a round
support started), ``unsold`` (``no_bids``, ``reserve_not_met``, ``no_payable_bidder``)
and ``retried`` (support started a new round: ``no_payable_bidder`` or ``charge_overdue``).

The bid path is the hottest of the service, so its children are bound once here;
settlement outcomes are counted when their transaction commits (:func:`count_on_commit`),
so a rolled-back step (a message handled again) is not counted twice.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

BIDS = Counter(
    "bazaar_auction_bids_total",
    "Bids decided: accepted (auto: the platform's proxy bids) or refused, by refusal code",
    ["outcome", "reason", "auto"],
)
SETTLEMENTS = Counter(
    "bazaar_auction_settlements_total",
    "Settlement outcomes: settled, unsold and retried (a new round), by reason",
    ["outcome", "reason"],
)

ACCEPTED_MANUAL = BIDS.labels("accepted", "", "false")
ACCEPTED_AUTO = BIDS.labels("accepted", "", "true")
# The refusals API.md names, bound up front; another code gets its child on first use.
_REFUSED: dict[str, Any] = {
    code: BIDS.labels("refused", code, "false")
    for code in (
        "bid_too_low",
        "auction_not_open",
        "own_auction",
        "payment_method_invalid",
        "auction_not_found",
        "validation_failed",
        "idempotency_key_reused",
        "service_unavailable",
    )
}


def bid_refused(code: str) -> None:
    child = _REFUSED.get(code)
    if child is None:
        child = _REFUSED[code] = BIDS.labels("refused", code, "false")
    child.inc()


def bids_accepted(manual: int, auto: int) -> None:
    if manual:
        ACCEPTED_MANUAL.inc(manual)
    if auto:
        ACCEPTED_AUTO.inc(auto)


_PENDING = "bazaar.auctions.metrics.pending"
_LISTENING = "bazaar.auctions.metrics.listening"


def count_on_commit(session: AsyncSession, outcome: str, reason: str) -> None:
    """Count a settlement outcome once ``session``'s transaction commits (never if it
    rolls back)."""
    info = session.info
    if not info.get(_LISTENING):
        info[_LISTENING] = True
        event.listen(session.sync_session, "after_commit", _count_pending)
        event.listen(session.sync_session, "after_rollback", _drop_pending)
    info.setdefault(_PENDING, []).append((outcome, reason))


def _count_pending(session: Session) -> None:
    for outcome, reason in session.info.pop(_PENDING, ()):
        SETTLEMENTS.labels(outcome, reason).inc()


def _drop_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)
