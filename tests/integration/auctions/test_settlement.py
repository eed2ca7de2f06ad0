"""The settlement saga against payments played on the broker: charge the winner, then the
next eligible bidder when a payment fails, unsold when nobody is left; deadlines and
re-sends; money taken for a charge nobody waits for any more is given back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeVar

import pytest
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from bazaar.contracts import auctions as contract
from bazaar.contracts import payments
from bazaar.contracts.base import Message
from bazaar.kit.config import PlatformSettings
from bazaar.kit.messaging.envelope import Envelope
from bazaar.kit.testing import TokenIssuer, read_topic, wait_for
from tests.integration.auctions.conftest import (
    AUCTIONS,
    Auctions,
    PaymentMethodsStandIn,
    User,
    two_replicas,
)

M = TypeVar("M", bound=Message)


def of_type(envelopes: list[Envelope], message: type[M]) -> list[M]:
    return [message.model_validate(e.data) for e in envelopes if e.type == message.TYPE]


async def closed_with_bids(
    market: Auctions, amounts: list[int], **overrides: object
) -> tuple[str, list[User]]:
    """An auction with one bid per amount, each by a new bidder, whose end then comes."""
    auction = await market.create(market.seller(), **overrides)
    bidders = []
    for n, amount in enumerate(amounts):
        bidder = market.user()
        response = await market.bid(auction["id"], bidder, amount, replica=n % 2)
        assert response.status_code == 201, response.text
        bidders.append(bidder)
    await market.end_now(auction["id"])
    return auction["id"], bidders


async def test_the_winner_is_charged_and_the_auction_settles(market: Auctions) -> None:
    auction_id, (_first, winner) = await closed_with_bids(market, [1000, 1500])
    (charge,) = await market.payments.charges(auction_id, 1)
    assert charge.user_id == winner.id
    assert charge.payment_method_id == winner.method_id
    assert charge.amount == 1500 and charge.currency == "EUR"
    assert charge.reference_type == "auction" and str(charge.reference_id) == auction_id
    closing = await market.get(auction_id)
    assert closing["status"] == "closing" and closing["winner_id"] is None

    await market.payments.answer(charge)
    settled = await market.wait_status(auction_id, "settled", timeout=20)
    assert settled["winner_id"] == str(winner.id)
    assert settled["final_price"] == 1500
    assert settled["payment_id"] == str(charge.payment_id)

    events = await read_topic(
        market.platform,
        contract.TOPIC,
        until=lambda seen: any(e.type == contract.AuctionSettled.TYPE for e in seen),
    )
    mine = [e for e in events if e.subject == auction_id]
    types = [e.type for e in mine]
    assert types.count(contract.AuctionClosed.TYPE) == 1
    assert types.count(contract.SettlementAttempted.TYPE) == 1
    assert types.count(contract.AuctionSettled.TYPE) == 1
    assert all(e.correlationid == auction_id for e in mine)


async def test_a_failed_payment_moves_to_the_next_highest_bidder(market: Auctions) -> None:
    auction_id, (_third, second, first) = await closed_with_bids(market, [1000, 1100, 1200])
    (charge,) = await market.payments.charges(auction_id, 1)
    assert charge.user_id == first.id and charge.amount == 1200
    await market.payments.answer(charge, failure_code="card_declined")

    charges = await market.payments.charges(auction_id, 2)
    retry = charges[1]
    assert retry.user_id == second.id and retry.amount == 1100
    assert retry.payment_id != charge.payment_id
    await market.payments.answer(retry)
    settled = await market.wait_status(auction_id, "settled", timeout=20)
    assert settled["winner_id"] == str(second.id) and settled["final_price"] == 1100
    assert settled["payment_id"] == str(retry.payment_id)

    # A repeated outcome for the first payment changes nothing.
    await market.payments.answer(charge, failure_code="card_declined")
    await market.payments.answer(retry)
    commands = await market.payments.commands(auction_id, 2)
    assert [c.type for c in commands] == [payments.ChargePayment.TYPE] * 2


async def test_when_every_payment_fails_the_auction_is_unsold(market: Auctions) -> None:
    auction_id, bidders = await closed_with_bids(market, [1000, 1100])
    for n in range(2):
        charges = await market.payments.charges(auction_id, n + 1)
        assert charges[n].user_id == bidders[1 - n].id
        await market.payments.answer(charges[n], failure_code="insufficient_funds")
    unsold = await market.wait_status(auction_id, "unsold", timeout=20)
    assert unsold["status_reason"] == "no_payable_bidder"
    assert unsold["winner_id"] is None


async def test_the_next_bidder_must_meet_the_reserve_too(market: Auctions) -> None:
    auction_id, (_low, high) = await closed_with_bids(market, [1000, 2000], reserve_price=1500)
    (charge,) = await market.payments.charges(auction_id, 1)
    assert charge.user_id == high.id
    await market.payments.answer(charge, failure_code="card_declined")
    unsold = await market.wait_status(auction_id, "unsold", timeout=20)
    assert unsold["status_reason"] == "no_payable_bidder"


async def test_reserve_not_met_is_unsold_without_a_charge(market: Auctions) -> None:
    auction_id, _ = await closed_with_bids(market, [1000, 1100], reserve_price=5000)
    unsold = await market.wait_status(auction_id, "unsold", timeout=10)
    assert unsold["status_reason"] == "reserve_not_met"
    assert unsold["reserve_met"] is False
    events = await read_topic(
        market.platform,
        contract.TOPIC,
        until=lambda seen: any(
            e.type == contract.AuctionUnsold.TYPE and e.subject == auction_id for e in seen
        ),
    )
    assert not any(e.type == contract.SettlementAttempted.TYPE for e in events)


async def test_a_buy_now_buyer_is_charged_the_buy_now_price(market: Auctions) -> None:
    auction = await market.create(market.seller(), buy_now_price=8000)
    bidder, buyer = market.user(), market.user()
    assert (await market.bid(auction["id"], bidder, 3000)).status_code == 201
    bought = await market.clients[0].post(
        f"{AUCTIONS}/{auction['id']}/buy-now",
        json={"payment_method_id": str(buyer.method_id)},
        headers=buyer.headers,
    )
    assert bought.status_code == 202
    (charge,) = await market.payments.charges(auction["id"], 1)
    assert charge.user_id == buyer.id and charge.amount == 8000
    # The buyer's card fails: the highest bidder is next, at their own bid.
    await market.payments.answer(charge, failure_code="card_declined")
    retry = (await market.payments.charges(auction["id"], 2))[1]
    assert retry.user_id == bidder.id and retry.amount == 3000
    await market.payments.answer(retry)
    settled = await market.wait_status(auction["id"], "settled", timeout=20)
    assert settled["winner_id"] == str(bidder.id) and settled["final_price"] == 3000


@pytest.fixture
async def impatient_market(
    auctions_database: URL,
    auctions_engine: AsyncEngine,
    platform_settings: PlatformSettings,
    token_issuer: TokenIssuer,
    payment_methods: PaymentMethodsStandIn,
) -> AsyncIterator[Auctions]:
    """Replicas whose saga waits 1 s for a payment outcome and sends a charge twice."""
    async with two_replicas(
        auctions_database,
        auctions_engine,
        platform_settings,
        token_issuer,
        payment_methods,
        settlement_charge_timeout_seconds=1.0,
        settlement_max_sends=2,
    ) as replicas:
        yield replicas


async def test_an_unanswered_charge_is_sent_again_then_given_up_for_the_next_bidder(
    impatient_market: Auctions,
) -> None:
    market = impatient_market
    auction_id, (second, first) = await closed_with_bids(market, [1000, 1100])
    charges = await market.payments.charges(auction_id, 2)
    # Nobody answered: the same payment was asked for again.
    assert charges[0] == charges[1] and charges[0].user_id == first.id
    # After the second send the saga gives up on it: cancel it, charge the next bidder.
    # (Commands are keyed by payment, so the two payments' commands may interleave.)
    commands = await market.payments.commands(auction_id, 4, timeout=30)
    (cancel,) = of_type(commands, payments.CancelPayment)
    assert cancel.payment_id == charges[0].payment_id and cancel.reason == "settlement_timeout"
    retry = of_type(commands, payments.ChargePayment)[2]
    assert retry.user_id == second.id and retry.amount == 1000

    # The first payment goes through after all: nobody wants that money, it is given back.
    await market.payments.answer(charges[0])
    late = await market.payments.commands(auction_id, 5, timeout=30)
    refund = of_type(late, payments.CancelPayment)[1]
    assert refund.payment_id == charges[0].payment_id
    assert refund.reason == "settlement_superseded"

    await market.payments.answer(retry)
    settled = await market.wait_status(auction_id, "settled", timeout=20)
    assert settled["winner_id"] == str(second.id)


async def test_support_cancelling_a_settling_auction_cancels_its_charge(
    market: Auctions,
) -> None:
    auction_id, _ = await closed_with_bids(market, [1000])
    (charge,) = await market.payments.charges(auction_id, 1)
    cancelled = await market.clients[1].post(
        f"{AUCTIONS}/{auction_id}/cancel", headers=market.support().headers
    )
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"
    commands = await market.payments.commands(auction_id, 2)
    (cancel,) = of_type(commands, payments.CancelPayment)
    assert cancel.payment_id == charge.payment_id
    # The charge succeeds anyway: the auction stays cancelled.
    await market.payments.answer(charge)
    await wait_for(
        lambda: market.payments.commands(auction_id, 3),
        timeout=30,
        message="the refund of a cancelled auction's payment",
    )
    assert (await market.get(auction_id))["status"] == "cancelled"
