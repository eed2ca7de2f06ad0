"""The settlement saga against payments played on the broker: charge the winner, then the
next eligible bidder when a payment fails, unsold when nobody is left; deadlines and
re-sends; money taken for a charge nobody waits for any more is given back."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import pytest
from httpx import Response
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


# --- support's retry ------------------------------------------------------------------


async def retry(market: Auctions, auction_id: str, caller: User, replica: int = 0) -> Response:
    return await market.clients[replica].post(
        f"{AUCTIONS}/{auction_id}/settlement/retry",
        json={"reason": "the winner added a new card"},
        headers=caller.headers,
    )


async def test_support_retries_an_auction_nobody_could_pay_for_and_it_settles(
    market: Auctions,
) -> None:
    auction_id, (_second, first) = await closed_with_bids(market, [1000, 1100])
    for n in range(2):
        charges = await market.payments.charges(auction_id, n + 1)
        await market.payments.answer(charges[n], failure_code="card_declined")
    await market.wait_status(auction_id, "unsold", timeout=20)

    retried = await retry(market, auction_id, market.support(), replica=1)
    assert retried.status_code == 202, retried.text
    assert retried.json()["status"] == "closing"
    assert retried.json()["status_reason"] is None
    # A new round: the highest bidder first again, with a new payment.
    charges = await market.payments.charges(auction_id, 3)
    assert charges[2].user_id == first.id and charges[2].amount == 1100
    assert charges[2].payment_id not in {charges[0].payment_id, charges[1].payment_id}
    await market.payments.answer(charges[2])
    settled = await market.wait_status(auction_id, "settled", timeout=20)
    assert settled["winner_id"] == str(first.id) and settled["final_price"] == 1100
    assert settled["payment_id"] == str(charges[2].payment_id)

    events = await read_topic(
        market.platform,
        contract.TOPIC,
        until=lambda seen: any(
            e.type == contract.AuctionSettled.TYPE and e.subject == auction_id for e in seen
        ),
    )
    attempted = [
        a for a in of_type(events, contract.SettlementAttempted) if str(a.auction_id) == auction_id
    ]
    assert [(a.attempt, a.round) for a in attempted] == [(1, 1), (2, 1), (3, 2)]
    assert attempted[2].retry_reason == "the winner added a new card"
    # Settled after an earlier unsold: the retry is over, a second one is refused.
    again = await retry(market, auction_id, market.support())
    assert again.status_code == 409 and again.json()["code"] == "settlement_not_retryable"


async def test_a_retried_round_that_fails_again_ends_unsold_again(market: Auctions) -> None:
    auction_id, (bidder,) = await closed_with_bids(market, [1000])
    (charge,) = await market.payments.charges(auction_id, 1)
    await market.payments.answer(charge, failure_code="card_declined")
    await market.wait_status(auction_id, "unsold", timeout=20)
    assert (await retry(market, auction_id, market.support())).status_code == 202
    second = (await market.payments.charges(auction_id, 2))[1]
    assert second.user_id == bidder.id and second.payment_id != charge.payment_id
    await market.payments.answer(second, failure_code="card_declined")

    async def unsold_again() -> dict[str, object] | None:
        auction = await market.get(auction_id)
        return auction if auction["status"] == "unsold" else None

    unsold = await wait_for(unsold_again, timeout=20, message="unsold after the retry")
    assert unsold["status_reason"] == "no_payable_bidder"


async def test_what_cannot_be_retried_is_refused(market: Auctions) -> None:
    support = market.support()
    seller = market.seller()
    no_bids = await market.create(seller)
    await market.end_now(no_bids["id"])
    await market.wait_status(no_bids["id"], "unsold")
    reserve = await market.create(seller, reserve_price=9000)
    assert (await market.bid(reserve["id"], market.user(), 1000)).status_code == 201
    await market.end_now(reserve["id"])
    await market.wait_status(reserve["id"], "unsold")
    still_open = await market.create(seller)
    # Closing, its first charge still within its deadline (30 s).
    settling, _ = await closed_with_bids(market, [1000])
    await market.wait_status(settling, "closing")
    for auction_id in (no_bids["id"], reserve["id"], still_open["id"], settling):
        refused = await retry(market, auction_id, support)
        assert refused.status_code == 409, refused.text
        assert refused.json()["code"] == "settlement_not_retryable"
    # Only support, admins and services may retry; nor is an unknown auction found.
    customer = await retry(market, settling, market.user())
    assert customer.status_code == 403
    unknown = await retry(market, str(uuid.uuid4()), support)
    assert unknown.status_code == 404


@pytest.fixture
async def stuck_market(
    auctions_database: URL,
    auctions_engine: AsyncEngine,
    platform_settings: PlatformSettings,
    token_issuer: TokenIssuer,
    payment_methods: PaymentMethodsStandIn,
) -> AsyncIterator[Auctions]:
    """Replicas whose saga waits 1 s for a charge and then keeps sending it."""
    async with two_replicas(
        auctions_database,
        auctions_engine,
        platform_settings,
        token_issuer,
        payment_methods,
        settlement_charge_timeout_seconds=1.0,
        settlement_max_sends=1000,
    ) as replicas:
        yield replicas


async def test_support_restarts_a_settlement_whose_charge_is_overdue(
    stuck_market: Auctions,
) -> None:
    market = stuck_market
    auction_id, (_low, high) = await closed_with_bids(market, [1000, 1100])
    (first, *_) = await market.payments.charges(auction_id, 2, timeout=30)  # sent twice
    retried = await retry(market, auction_id, market.support())
    assert retried.status_code == 202, retried.text

    def commands_after_retry(seen: list[Envelope]) -> bool:
        charges = of_type(seen, payments.ChargePayment)
        return any(c.payment_id != first.payment_id for c in charges) and bool(
            of_type(seen, payments.CancelPayment)
        )

    commands = await wait_for(
        lambda: _commands_if(market, auction_id, commands_after_retry),
        timeout=30,
        interval=0.5,
        message="the overdue charge cancelled and a new one sent",
    )
    (cancel, *_) = of_type(commands, payments.CancelPayment)
    assert cancel.payment_id == first.payment_id and cancel.reason == "settlement_retried"
    fresh = next(
        c for c in of_type(commands, payments.ChargePayment) if c.payment_id != first.payment_id
    )
    assert fresh.user_id == high.id and fresh.amount == 1100
    await market.payments.answer(fresh)
    settled = await market.wait_status(auction_id, "settled", timeout=20)
    assert settled["payment_id"] == str(fresh.payment_id)
    # The given-up charge goes through after all: it is stale, its money is given back.
    await market.payments.answer(first)
    await wait_for(
        lambda: _commands_if(
            market,
            auction_id,
            lambda seen: any(
                c.reason == "settlement_superseded" for c in of_type(seen, payments.CancelPayment)
            ),
        ),
        timeout=30,
        interval=0.5,
        message="the refund of the given-up charge",
    )


async def _commands_if(
    market: Auctions, auction_id: str, condition: Callable[[list[Envelope]], bool]
) -> list[Envelope] | None:
    commands = await market.payments.commands(auction_id, 1)
    return commands if condition(commands) else None
