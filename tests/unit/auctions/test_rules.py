"""The bidding rules, against API.md: examples, then generated bid sequences checked
against a small reference model written straight from the text of the rules."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bazaar.auctions import rules
from bazaar.auctions.errors import BidTooLow

ANN, BOB, CAT, DAN, EVE = (uuid.UUID(int=n) for n in range(1, 6))
BIDDERS = (ANN, BOB, CAT, DAN, EVE)
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def fresh(starting: int = 1000, increment: int = 100) -> rules.BiddingState:
    return rules.BiddingState(starting_price=starting, min_increment=increment)


def amounts(outcome: rules.BidOutcome) -> list[tuple[uuid.UUID, int, bool]]:
    return [(bid.bidder_id, bid.amount, bid.auto) for bid in outcome.bids]


# --- examples ---------------------------------------------------------------------------


def test_the_first_bid_must_reach_the_starting_price() -> None:
    with pytest.raises(BidTooLow) as refused:
        rules.place_bid(fresh(), ANN, 999)
    assert refused.value.extra["minimum_amount"] == 1000
    outcome = rules.place_bid(fresh(), ANN, 1000)
    assert amounts(outcome) == [(ANN, 1000, False)]
    assert outcome.leading and outcome.state.current_price == 1000


def test_later_bids_must_beat_the_price_by_the_increment() -> None:
    state = rules.place_bid(fresh(), ANN, 1000).state
    with pytest.raises(BidTooLow):
        rules.place_bid(state, BOB, 1099)
    outcome = rules.place_bid(state, BOB, 1100)
    assert amounts(outcome) == [(BOB, 1100, False)]
    assert outcome.leading and outcome.state.leader_id == BOB


def test_a_proxy_bidder_is_outbid_only_above_their_maximum() -> None:
    # Ann bids 1000 and is willing to go to 2000.
    state = rules.place_bid(fresh(), ANN, 1000, 2000).state
    assert state.current_price == 1000
    # Bob bids 1500: Ann's proxy answers at once with 1600 and Ann still leads.
    outcome = rules.place_bid(state, BOB, 1500)
    assert amounts(outcome) == [(BOB, 1500, False), (ANN, 1600, True)]
    assert not outcome.leading
    assert outcome.state.current_price == 1600 and outcome.state.leader_id == ANN
    # Bob comes back with a maximum of 2500: he leads at Ann's maximum plus the increment.
    outcome = rules.place_bid(outcome.state, BOB, 1700, 2500)
    assert amounts(outcome) == [(BOB, 1700, False), (BOB, 2100, True)]
    assert outcome.leading and outcome.state.current_price == 2100


def test_the_price_is_capped_at_the_leaders_maximum() -> None:
    state = rules.place_bid(fresh(), ANN, 1000, 1650).state
    outcome = rules.place_bid(state, BOB, 1600)
    # The second maximum (1600) plus the increment would be 1700: capped at Ann's 1650.
    assert amounts(outcome) == [(BOB, 1600, False), (ANN, 1650, True)]


def test_an_equal_maximum_loses_to_the_earlier_one() -> None:
    state = rules.place_bid(fresh(), ANN, 1000, 2000).state
    with pytest.raises(BidTooLow):
        rules.place_bid(state, BOB, 1100, 2000)
    with pytest.raises(BidTooLow):
        rules.place_bid(state, BOB, 2000)


def test_a_leader_may_raise_their_own_maximum_without_moving_ahead_of_themselves() -> None:
    state = rules.place_bid(fresh(), ANN, 1000, 1500).state
    state = rules.place_bid(state, BOB, 1100).state  # Ann's proxy: 1200
    assert state.current_price == 1200 and state.leader_id == ANN
    outcome = rules.place_bid(state, ANN, 1300, 5000)
    assert amounts(outcome) == [(ANN, 1300, False)]
    assert outcome.leading and outcome.state.leader_max == 5000
    # Bob now needs more than 5000 to lead.
    outcome = rules.place_bid(outcome.state, BOB, 1400, 4000)
    assert amounts(outcome) == [(BOB, 1400, False), (ANN, 4100, True)]


def test_a_manual_bid_above_the_new_price_is_the_price() -> None:
    state = rules.place_bid(fresh(), ANN, 1000, 1200).state
    outcome = rules.place_bid(state, BOB, 3000)
    # Bob beats Ann's maximum; his own bid (3000) is already above 1200 + 100.
    assert amounts(outcome) == [(BOB, 3000, False)]
    assert outcome.state.second_max == 1200


def test_soft_close_moves_the_end_when_a_bid_comes_late_enough() -> None:
    ends_at = NOW + timedelta(seconds=30)
    late = NOW + timedelta(seconds=25)
    assert rules.soft_close_end(
        ends_at=ends_at, bid_time=late, soft_close_seconds=60, max_extensions=None, extensions=9
    ) == late + timedelta(seconds=60)
    # Early enough: no extension. Not configured: none. Used up: none.
    assert (
        rules.soft_close_end(
            ends_at=ends_at, bid_time=NOW, soft_close_seconds=10, max_extensions=None, extensions=0
        )
        is None
    )
    assert (
        rules.soft_close_end(
            ends_at=ends_at, bid_time=late, soft_close_seconds=0, max_extensions=None, extensions=0
        )
        is None
    )
    assert (
        rules.soft_close_end(
            ends_at=ends_at, bid_time=late, soft_close_seconds=60, max_extensions=2, extensions=2
        )
        is None
    )


def test_bids_are_taken_between_start_and_end_only() -> None:
    start, end = NOW, NOW + timedelta(hours=1)
    assert rules.accepts_bids("open", start, end, NOW)
    assert rules.accepts_bids("scheduled", start, end, NOW)  # its start has come
    assert not rules.accepts_bids("scheduled", start, end, NOW - timedelta(seconds=1))
    assert not rules.accepts_bids("open", start, end, end)
    for status in ("closing", "settled", "unsold", "cancelled"):
        assert not rules.accepts_bids(status, start, end, NOW)


def test_buy_now_stands_until_a_bid_reaches_its_price() -> None:
    assert rules.buy_now_available(5000, None)
    assert rules.buy_now_available(5000, 4999)
    assert not rules.buy_now_available(5000, 5000)
    assert not rules.buy_now_available(None, None)


# --- generated sequences against a reference model --------------------------------------


@dataclass
class ReferenceAuction:
    """API.md's proxy-bidding paragraph, taken literally and kept naive: every maximum is
    remembered, and the leader and price are recomputed from all of them after each bid."""

    starting: int
    increment: int
    maxima: dict[uuid.UUID, int] = field(default_factory=dict)
    set_at: dict[uuid.UUID, int] = field(default_factory=dict)
    accepted: list[tuple[uuid.UUID, int, bool]] = field(default_factory=list)

    def leader(self) -> uuid.UUID | None:
        if not self.maxima:
            return None
        # The highest maximum; the earlier one on a tie.
        return min(self.maxima, key=lambda b: (-self.maxima[b], self.set_at[b]))

    def bid(self, bidder: uuid.UUID, amount: int, max_amount: int | None) -> bool | None:
        """True/False: accepted, leading or not; None: refused (bid_too_low)."""
        minimum = self.accepted[-1][1] + self.increment if self.accepted else self.starting
        if amount < minimum:
            return None
        maximum = max(amount, max_amount or amount)
        leader = self.leader()
        if leader is not None and leader != bidder and maximum == self.maxima[leader]:
            return None
        if maximum > self.maxima.get(bidder, 0):
            self.maxima[bidder] = maximum
            self.set_at[bidder] = len(self.accepted)
        self.accepted.append((bidder, amount, False))
        leader = self.leader()
        assert leader is not None
        others = [m for b, m in self.maxima.items() if b != leader]
        leaders_last = next(a for b, a, _ in reversed(self.accepted) if b == leader)
        price = leaders_last
        if others:
            price = max(leaders_last, min(max(others) + self.increment, self.maxima[leader]))
        if self.accepted[-1][:2] != (leader, price):
            self.accepted.append((leader, price, True))
        return leader == bidder


@st.composite
def auctions(draw: st.DrawFn) -> tuple[int, int]:
    return draw(st.integers(1, 5_000)), draw(st.integers(1, 500))


@settings(max_examples=300, deadline=None)
@given(auction=auctions(), data=st.data())
def test_generated_bid_sequences_follow_the_reference_model(
    auction: tuple[int, int], data: st.DataObject
) -> None:
    starting, increment = auction
    model = ReferenceAuction(starting, increment)
    state = rules.BiddingState(starting_price=starting, min_increment=increment)
    accepted: list[tuple[uuid.UUID, int, bool]] = []
    for _ in range(data.draw(st.integers(1, 40), label="bids")):
        bidder = data.draw(st.sampled_from(BIDDERS), label="bidder")
        minimum = state.minimum_bid
        # Mostly around the minimum, sometimes below it, sometimes far above.
        amount = data.draw(
            st.one_of(
                st.integers(max(1, minimum - 2 * increment), minimum + 3 * increment),
                st.integers(minimum, minimum + 50 * increment),
            ),
            label="amount",
        )
        max_amount = data.draw(
            st.one_of(
                st.none(),
                st.integers(amount, amount + 20 * increment),
                # An existing maximum exactly: the tie rule.
                st.sampled_from(sorted({amount, *model.maxima.values()})).filter(
                    lambda m, a=amount: m >= a
                ),
            ),
            label="max_amount",
        )
        expected = model.bid(bidder, amount, max_amount)
        try:
            outcome = rules.place_bid(state, bidder, amount, max_amount)
        except BidTooLow:
            assert expected is None, "the rules refused a bid the model accepts"
            continue
        assert expected is not None, "the rules accepted a bid the model refuses"
        assert outcome.leading is expected
        state = outcome.state
        accepted.extend((b.bidder_id, b.amount, b.auto) for b in outcome.bids)
        assert accepted == model.accepted
        # The invariants the service relies on.
        assert state.current_price == accepted[-1][1]
        assert state.leader_id == accepted[-1][0] == model.leader()
        assert state.leader_max == model.maxima[state.leader_id]
    prices = [amount for _, amount, _ in accepted]
    assert prices == sorted(set(prices)), "accepted amounts must be strictly increasing"
