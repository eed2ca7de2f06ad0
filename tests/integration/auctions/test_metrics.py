"""The auctions' Prometheus counters: every bid decided, by outcome and refusal code (the
platform's proxy bids apart), and settlement outcomes, counted once their transaction
commits."""

from __future__ import annotations

import uuid

from prometheus_client import REGISTRY

from tests.integration.auctions.conftest import Auctions


def bids(outcome: str, reason: str = "", auto: str = "false") -> float:
    value = REGISTRY.get_sample_value(
        "bazaar_auction_bids_total", {"outcome": outcome, "reason": reason, "auto": auto}
    )
    return value or 0.0


def settlements(outcome: str, reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "bazaar_auction_settlements_total", {"outcome": outcome, "reason": reason}
    )
    return value or 0.0


async def test_bids_are_counted_by_outcome_and_refusal_code(market: Auctions) -> None:
    before = {
        "manual": bids("accepted"),
        "auto": bids("accepted", auto="true"),
        "too_low": bids("refused", "bid_too_low"),
        "own": bids("refused", "own_auction"),
        "method": bids("refused", "payment_method_invalid"),
    }
    seller, proxy, rival = market.seller(), market.user(), market.user()
    auction = await market.create(seller)
    assert (await market.bid(auction["id"], proxy, 1000, max_amount=3000)).status_code == 201
    # The rival's bid is accepted and the proxy bidder's automatic bid answers it.
    assert (await market.bid(auction["id"], rival, 1500, replica=1)).status_code == 201
    assert (await market.bid(auction["id"], rival, 1000)).status_code == 409
    assert (await market.bid(auction["id"], seller, 5000)).status_code == 403
    stranger_method = market.user()
    stranger_method.method_id = uuid.uuid4()
    assert (await market.bid(auction["id"], stranger_method, 5000)).status_code == 422

    assert bids("accepted") - before["manual"] == 2
    assert bids("accepted", auto="true") - before["auto"] == 1
    assert bids("refused", "bid_too_low") - before["too_low"] == 1
    assert bids("refused", "own_auction") - before["own"] == 1
    assert bids("refused", "payment_method_invalid") - before["method"] == 1


async def test_settlement_outcomes_are_counted(market: Auctions) -> None:
    before_unsold = settlements("unsold", "no_bids")
    before_winner = settlements("settled", "winner")
    nobody = await market.create(market.seller())
    await market.end_now(nobody["id"])
    await market.wait_status(nobody["id"], "unsold")
    sold = await market.create(market.seller())
    assert (await market.bid(sold["id"], market.user(), 1000)).status_code == 201
    await market.end_now(sold["id"])
    (charge,) = await market.payments.charges(sold["id"], 1)
    await market.payments.answer(charge)
    await market.wait_status(sold["id"], "settled", timeout=20)
    assert settlements("unsold", "no_bids") - before_unsold == 1
    assert settlements("settled", "winner") - before_winner == 1
