"""The bidding rules of API.md, as pure functions: what a bid does to an auction.

No database, no clock, no I/O: :func:`place_bid` takes the auction's bidding state and
one bid and returns the bids to record and the state after them, or raises
:class:`~bazaar.auctions.errors.BidTooLow`. The service calls it under the auction's
row lock; the unit tests check it against a small reference model of the rules.

Proxy bidding needs only four numbers per auction, not every bidder's maximum:

* the current price, which always equals the leader's last accepted bid (each bid
  transaction ends with a bid by the leader at the current price);
* the leader and the leader's maximum;
* the highest maximum among the *other* bidders (``second_max``).

That suffices because a bidder who is not leading can only raise their maximum (their
new bid must beat the current price, which is above every other bidder's maximum),
so the second-highest maximum after a bid is either unchanged, the newcomer's, or the
displaced leader's.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from bazaar.auctions.errors import BidTooLow


@dataclass(frozen=True, slots=True)
class BiddingState:
    """What the rules need to know about an auction's bids so far."""

    starting_price: int
    min_increment: int
    current_price: int | None = None
    leader_id: uuid.UUID | None = None
    leader_max: int | None = None
    # The highest maximum among bidders other than the leader (None: nobody else bid).
    second_max: int | None = None

    @property
    def minimum_bid(self) -> int:
        """The least amount the next bid may have."""
        if self.current_price is None:
            return self.starting_price
        return self.current_price + self.min_increment


@dataclass(frozen=True, slots=True)
class PlacedBid:
    """One accepted bid. ``max_amount``: the bidder's maximum once it is accepted (secret)."""

    bidder_id: uuid.UUID
    amount: int
    max_amount: int
    auto: bool


@dataclass(frozen=True, slots=True)
class BidOutcome:
    """The bids to record, in acceptance order (strictly increasing amounts), and the state
    after them. The first is the caller's own; a second is the leader's automatic bid."""

    bids: tuple[PlacedBid, ...]
    state: BiddingState

    @property
    def leading(self) -> bool:
        """Whether the caller leads once the bid is accepted."""
        return self.state.leader_id == self.bids[0].bidder_id


def place_bid(
    state: BiddingState, bidder_id: uuid.UUID, amount: int, max_amount: int | None = None
) -> BidOutcome:
    """Accept a bid of ``amount`` with the bidder's secret maximum, or raise BidTooLow.

    After the bid, the leader is the bidder with the highest maximum (the earlier one on a
    tie, so an equal maximum is refused) and the price is the second-highest maximum plus
    the increment, capped at the leader's maximum and never below the leader's own last
    bid. When that leaves the price or the lead elsewhere than the caller's bid, the
    leader gets an automatic bid at the new price.
    """
    minimum = state.minimum_bid
    if amount < minimum:
        raise BidTooLow(f"The least bid accepted now is {minimum}", minimum_amount=minimum)
    ceiling = amount if max_amount is None else max(amount, max_amount)

    leader, leader_max, second = state.leader_id, state.leader_max, state.second_max
    if leader is None or leader_max is None:
        leader, leader_max = bidder_id, ceiling
    elif leader == bidder_id:
        # The leader raises their own bid (and perhaps their maximum); a maximum is never
        # lowered by a later bid.
        leader_max = max(leader_max, ceiling)
    elif ceiling > leader_max:
        second, leader, leader_max = leader_max, bidder_id, ceiling
    elif ceiling == leader_max:
        raise BidTooLow(
            "Another bidder already holds this maximum; the earlier maximum wins a tie",
            minimum_amount=minimum,
        )
    else:
        second = ceiling if second is None else max(second, ceiling)

    own_max = leader_max if leader == bidder_id else ceiling
    placed = [PlacedBid(bidder_id, amount, own_max, auto=False)]
    # The leader's last bid: this one if the caller leads, else the price so far (which is
    # always the leader's last bid).
    leader_last = amount
    if leader != bidder_id and state.current_price is not None:
        leader_last = state.current_price
    price = leader_last
    if second is not None:
        price = max(leader_last, min(second + state.min_increment, leader_max))
    if leader != bidder_id or price != amount:
        placed.append(PlacedBid(leader, price, leader_max, auto=True))
    return BidOutcome(
        bids=tuple(placed),
        state=replace(
            state,
            current_price=price,
            leader_id=leader,
            leader_max=leader_max,
            second_max=second,
        ),
    )


def accepts_bids(status: str, starts_at: datetime, ends_at: datetime, now: datetime) -> bool:
    """Open (or scheduled and due to open) and not yet at its end."""
    return status in ("open", "scheduled") and starts_at <= now < ends_at


def soft_close_end(
    *,
    ends_at: datetime,
    bid_time: datetime,
    soft_close_seconds: int,
    max_extensions: int | None,
    extensions: int,
) -> datetime | None:
    """The new ``ends_at`` when a bid at ``bid_time`` extends the auction, else None.

    A bid accepted within ``soft_close_seconds`` of the end moves it to the bid's time plus
    ``soft_close_seconds``, at most ``max_extensions`` times when that is set.
    """
    if soft_close_seconds <= 0:
        return None
    if max_extensions is not None and extensions >= max_extensions:
        return None
    new_end = bid_time + timedelta(seconds=soft_close_seconds)
    return new_end if new_end > ends_at else None


def buy_now_available(buy_now_price: int | None, current_price: int | None) -> bool:
    """Buy-now stands while no bid has reached its price."""
    return buy_now_price is not None and (current_price is None or current_price < buy_now_price)


def reserve_met(reserve_price: int | None, current_price: int | None) -> bool:
    return current_price is not None and (reserve_price is None or current_price >= reserve_price)
