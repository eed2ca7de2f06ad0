"""The card behaviours, idempotency and refunds, through the provider's own interface."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bazaar.kit.errors import IdempotencyKeyReused
from bazaar.psp_sandbox.errors import (
    CardExpired,
    ChargeAlreadyRefunded,
    ChargeNotFound,
    ChargeNotRefundable,
    InvalidCardNumber,
    ProcessingError,
    RefundExceedsCharge,
    TokenNotFound,
)
from bazaar.psp_sandbox.ledger import CardBehaviour
from bazaar.psp_sandbox.service import ChargeRequest, PspSandbox
from tests.unit.psp_sandbox.conftest import (
    ANSWERS_LATE,
    APPROVES,
    DECLINES,
    FAILS_FIRST,
    INSUFFICIENT_FUNDS,
    Clock,
    card,
)


async def token_for(sandbox: PspSandbox, number: str) -> str:
    return (await sandbox.issue_token(card(number))).token


def usd(token: str, amount: int = 1250) -> ChargeRequest:
    return ChargeRequest(amount=amount, currency="USD", token=token)


async def test_a_token_keeps_brand_last4_and_behaviour_but_not_the_number(
    sandbox: PspSandbox, tmp_path: Path
) -> None:
    issued = await sandbox.issue_token(card(DECLINES))

    assert (issued.brand, issued.last4, issued.behaviour) == ("visa", "0002", CardBehaviour.DECLINE)
    assert DECLINES not in issued.model_dump_json()
    assert DECLINES.encode() not in (tmp_path / "ledger.jsonl").read_bytes()


async def test_a_luhn_invalid_number_gets_no_token(sandbox: PspSandbox) -> None:
    with pytest.raises(InvalidCardNumber):
        await sandbox.issue_token(card("4242424242424241"))
    assert sandbox.ledger.tokens == {}


async def test_an_expired_card_gets_no_token(sandbox: PspSandbox) -> None:
    with pytest.raises(CardExpired):
        await sandbox.issue_token(card(APPROVES, exp_month=10, exp_year=2026))


async def test_the_approving_card_makes_a_succeeded_charge(sandbox: PspSandbox) -> None:
    outcome = await sandbox.charge("k1", usd(await token_for(sandbox, APPROVES)))

    assert outcome.state.charge.status == "succeeded"
    assert outcome.state.charge.failure_code is None
    assert (outcome.replayed, outcome.answer_delay) == (False, 0.0)


@pytest.mark.parametrize(
    ("number", "failure_code"),
    [(DECLINES, "card_declined"), (INSUFFICIENT_FUNDS, "insufficient_funds")],
)
async def test_declining_cards_make_a_failed_charge_with_their_code(
    sandbox: PspSandbox, number: str, failure_code: str
) -> None:
    outcome = await sandbox.charge("k1", usd(await token_for(sandbox, number)))

    assert outcome.state.charge.status == "failed"
    assert outcome.state.charge.failure_code == failure_code
    assert list(sandbox.ledger.charges) == [outcome.state.charge.id]


async def test_the_fails_first_card_fails_once_per_key_without_charging(
    sandbox: PspSandbox,
) -> None:
    token = await token_for(sandbox, FAILS_FIRST)

    with pytest.raises(ProcessingError):
        await sandbox.charge("k1", usd(token))
    assert sandbox.ledger.charges == {}

    retried = await sandbox.charge("k1", usd(token))
    assert retried.state.charge.status == "succeeded"
    with pytest.raises(ProcessingError):
        await sandbox.charge("k2", usd(token))


async def test_the_late_card_charges_at_once_and_asks_for_its_answer_to_be_held_back(
    sandbox: PspSandbox,
) -> None:
    outcome = await sandbox.charge("k1", usd(await token_for(sandbox, ANSWERS_LATE)))

    assert outcome.state.charge.status == "succeeded"
    assert outcome.answer_delay == 30.0
    assert await sandbox.find_charge("k1") is outcome.state


async def test_a_card_expired_since_it_was_tokenised_is_declined(
    sandbox: PspSandbox, clock: Clock
) -> None:
    token = (await sandbox.issue_token(card(APPROVES, exp_month=11, exp_year=2026))).token
    clock.now = clock.now.replace(year=2027, month=1)

    outcome = await sandbox.charge("k1", usd(token))

    assert (outcome.state.charge.status, outcome.state.charge.failure_code) == (
        "failed",
        "expired_card",
    )


async def test_the_same_key_and_request_replay_the_first_charge(sandbox: PspSandbox) -> None:
    token = await token_for(sandbox, APPROVES)
    first = await sandbox.charge("k1", usd(token))

    again = await sandbox.charge("k1", usd(token))

    assert again.replayed
    assert again.state is first.state
    assert len(sandbox.ledger.charges) == 1


async def test_the_same_key_with_another_request_is_refused(sandbox: PspSandbox) -> None:
    token = await token_for(sandbox, APPROVES)
    await sandbox.charge("k1", usd(token, amount=1250))

    with pytest.raises(IdempotencyKeyReused):
        await sandbox.charge("k1", usd(token, amount=1251))
    assert len(sandbox.ledger.charges) == 1


async def test_a_failed_first_attempt_binds_its_key_to_the_request(sandbox: PspSandbox) -> None:
    token = await token_for(sandbox, FAILS_FIRST)
    with pytest.raises(ProcessingError):
        await sandbox.charge("k1", usd(token, amount=1250))

    with pytest.raises(IdempotencyKeyReused):
        await sandbox.charge("k1", usd(token, amount=999))


async def test_concurrent_requests_with_one_key_make_one_charge(sandbox: PspSandbox) -> None:
    token = await token_for(sandbox, APPROVES)

    outcomes = await asyncio.gather(*(sandbox.charge("k1", usd(token)) for _ in range(6)))

    assert len({outcome.state.charge.id for outcome in outcomes}) == 1
    assert sorted(outcome.replayed for outcome in outcomes) == [False] + [True] * 5
    assert len(sandbox.ledger.charges) == 1
    assert len(sandbox.locks) == 0


async def test_an_unknown_token_is_refused_and_leaves_the_key_free(sandbox: PspSandbox) -> None:
    with pytest.raises(TokenNotFound):
        await sandbox.charge("k1", usd("tok_nope"))

    outcome = await sandbox.charge("k1", usd(await token_for(sandbox, APPROVES)))
    assert outcome.state.charge.status == "succeeded"


async def test_listing_filters_by_key_and_status(sandbox: PspSandbox) -> None:
    approved = await sandbox.charge("k1", usd(await token_for(sandbox, APPROVES)))
    declined = await sandbox.charge("k2", usd(await token_for(sandbox, DECLINES)))

    assert await sandbox.list_charges() == [approved.state, declined.state]
    assert await sandbox.list_charges(idempotency_key="k2") == [declined.state]
    assert await sandbox.list_charges(idempotency_key="k3") == []
    assert await sandbox.list_charges(status="succeeded") == [approved.state]
    assert await sandbox.list_charges(idempotency_key="k2", status="succeeded") == []


async def test_refunds_partial_then_the_rest_then_nothing_more(sandbox: PspSandbox) -> None:
    charge = (await sandbox.charge("k1", usd(await token_for(sandbox, APPROVES), 1000))).state

    partial = await sandbox.refund(charge.charge.id, "r1", 300)
    rest = await sandbox.refund(charge.charge.id, "r2", None)

    assert (partial.refund.amount, rest.refund.amount) == (300, 700)
    assert charge.refunded_amount == 1000
    with pytest.raises(ChargeAlreadyRefunded):
        await sandbox.refund(charge.charge.id, "r3", None)


async def test_a_refund_larger_than_what_is_left_is_refused(sandbox: PspSandbox) -> None:
    charge = (await sandbox.charge("k1", usd(await token_for(sandbox, APPROVES), 1000))).state
    await sandbox.refund(charge.charge.id, "r1", 600)

    with pytest.raises(RefundExceedsCharge) as refused:
        await sandbox.refund(charge.charge.id, "r2", 401)

    assert refused.value.extra["refundable_amount"] == 400
    assert charge.refunded_amount == 600


async def test_a_refund_key_replays_and_refuses_another_amount(sandbox: PspSandbox) -> None:
    charge = (await sandbox.charge("k1", usd(await token_for(sandbox, APPROVES), 1000))).state
    first = await sandbox.refund(charge.charge.id, "r1", 100)

    again = await sandbox.refund(charge.charge.id, "r1", 100)

    assert again.replayed
    assert again.refund == first.refund
    with pytest.raises(IdempotencyKeyReused):
        await sandbox.refund(charge.charge.id, "r1", 200)
    assert charge.refunded_amount == 100


async def test_concurrent_refunds_never_add_up_to_more_than_the_charge(
    sandbox: PspSandbox,
) -> None:
    charge = (await sandbox.charge("k1", usd(await token_for(sandbox, APPROVES), 1000))).state

    results = await asyncio.gather(
        *(sandbox.refund(charge.charge.id, f"r{n}", 300) for n in range(6)),
        return_exceptions=True,
    )

    assert sum(not isinstance(result, Exception) for result in results) == 3
    assert all(isinstance(r, RefundExceedsCharge) for r in results if isinstance(r, Exception))
    assert charge.refunded_amount == 900


async def test_a_failed_charge_cannot_be_refunded(sandbox: PspSandbox) -> None:
    charge = (await sandbox.charge("k1", usd(await token_for(sandbox, DECLINES)))).state

    with pytest.raises(ChargeNotRefundable):
        await sandbox.refund(charge.charge.id, "r1", None)


async def test_an_unknown_charge_is_not_found(sandbox: PspSandbox) -> None:
    with pytest.raises(ChargeNotFound):
        await sandbox.refund("ch_nope", "r1", None)
    with pytest.raises(ChargeNotFound):
        sandbox.get_charge("ch_nope")
