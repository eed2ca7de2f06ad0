"""ChargePayment from a saga: one payment per payment_id, one charge, one final outcome."""

from __future__ import annotations

import uuid

import pytest

from bazaar.contracts import payments as contract
from bazaar.kit.db import transaction
from bazaar.kit.messaging.envelope import new_envelope
from bazaar.kit.testing import wait_for
from bazaar.payments import repository
from bazaar.payments.handlers import command_handlers
from tests.integration.payments.conftest import CARDS, Payments, charge_command
from tests.integration.peers import envelope_of


@pytest.mark.parametrize(
    ("card", "event", "status", "failure_code"),
    [
        ("approves", contract.PaymentSucceeded, "succeeded", None),
        ("declines", contract.PaymentFailed, "failed", "card_declined"),
        ("insufficient_funds", contract.PaymentFailed, "failed", "insufficient_funds"),
        ("fails_first", contract.PaymentSucceeded, "succeeded", None),
    ],
)
async def test_each_test_card_ends_in_its_outcome(
    payments: Payments,
    card: str,
    event: type[contract.PaymentOutcome],
    status: str,
    failure_code: str | None,
) -> None:
    user = str(uuid.uuid4())
    method_id = await payments.add_method(user, CARDS[card])
    command = charge_command(method_id, user, amount=4200)
    correlation = f"saga-{uuid.uuid4()}"
    await payments.send(command, correlation_id=correlation)

    pid = str(command.payment_id)
    [outcome] = await payments.events(pid, until=1)
    assert outcome.type == event.TYPE
    assert outcome.correlationid == correlation
    assert outcome.userid == user
    assert outcome.data["payment_id"] == pid and outcome.data["amount"] == 4200
    assert outcome.data["reference_id"] == str(command.reference_id)
    assert outcome.data.get("failure_code") == failure_code

    payment = await payments.wait_status(pid, status)
    assert payment.failure_code == failure_code
    charges = await payments.sandbox.charges(f"pay-{pid}")
    assert len(charges) == 1
    assert charges[0]["status"] == status and charges[0]["amount"] == 4200
    assert payment.provider_charge_id == charges[0]["id"]

    read = await payments.client.get(f"/api/payments/{pid}", headers=payments.user(user))
    assert read.status_code == 200
    assert read.json()["status"] == status and read.json()["failure_code"] == failure_code


async def test_a_failed_first_attempt_is_retried_with_the_same_key(payments: Payments) -> None:
    user = str(uuid.uuid4())
    method_id = await payments.add_method(user, CARDS["fails_first"])
    command = charge_command(method_id, user)
    await payments.send(command)
    pid = str(command.payment_id)
    await payments.wait_status(pid, "succeeded")

    attempts = await payments.attempts(pid)
    assert [(a.kind, a.outcome, a.http_status) for a in attempts] == [
        ("charge", "transient_error", 500),
        ("charge", "succeeded", 201),
    ]
    assert {a.idempotency_key for a in attempts} == {f"pay-{pid}"}


async def test_a_lost_answer_is_found_out_and_the_card_is_charged_once(
    payments: Payments,
) -> None:
    user = str(uuid.uuid4())
    method_id = await payments.add_method(user, CARDS["answers_late"])
    command = charge_command(method_id, user, amount=777)
    await payments.send(command)
    pid = str(command.payment_id)

    events = await payments.events(pid, until={contract.PaymentSucceeded.TYPE})
    assert [event.type for event in events] == [
        contract.PaymentProcessing.TYPE,
        contract.PaymentSucceeded.TYPE,
    ]
    payment = await payments.wait_status(pid, "succeeded")
    assert payment.attempts == 1

    charges = await payments.sandbox.charges(f"pay-{pid}")
    assert len(charges) == 1 and charges[0]["status"] == "succeeded"
    assert [
        c for c in await payments.sandbox.charges() if c["idempotency_key"] == f"pay-{pid}"
    ] == (charges)
    kinds = [(a.kind, a.outcome) for a in await payments.attempts(pid)]
    assert kinds[0] == ("charge", "unknown")
    assert kinds[-1] == ("lookup", "succeeded")
    assert ("charge", "succeeded") not in kinds


async def test_the_same_charge_three_times_charges_once_and_answers_each_time(
    payments: Payments,
) -> None:
    command = await payments.new_charge()
    pid = str(command.payment_id)
    await payments.send(command)
    await payments.events(pid, until=1)

    # The saga missed the answer and sends the command again, twice; and the broker
    # delivers one of those envelopes twice (the inbox absorbs that one).
    again = new_envelope(source="bazaar/tests", type=command.TYPE, data=command, subject=pid)
    await payments.send(command, again, again)

    events = await payments.events(pid, until=3)
    assert [event.type for event in events] == [contract.PaymentSucceeded.TYPE] * 3
    assert len(await payments.sandbox.charges(f"pay-{pid}")) == 1
    payment = await payments.payment(pid)
    assert payment is not None and payment.attempts == 1


async def test_three_deliveries_at_once_make_one_charge(payments: Payments) -> None:
    user = str(uuid.uuid4())
    method_id = await payments.add_method(user, CARDS["declines"])
    command = charge_command(method_id, user)
    pid = str(command.payment_id)
    await payments.send(command, command, command)

    await payments.wait_status(pid, "failed")
    outcomes = await payments.events(pid, until=1)
    assert {event.type for event in outcomes} == {contract.PaymentFailed.TYPE}
    assert len(await payments.sandbox.charges(f"pay-{pid}")) == 1


@pytest.mark.parametrize("whose", ["unknown", "deleted", "another_users"])
async def test_a_method_that_cannot_be_charged_fails_without_a_charge(
    payments: Payments, whose: str
) -> None:
    user = str(uuid.uuid4())
    if whose == "unknown":
        method_id = str(uuid.uuid4())
    elif whose == "deleted":
        method_id = await payments.add_method(user)
        deleted = await payments.client.delete(
            f"/api/payments/methods/{method_id}", headers=payments.user(user)
        )
        assert deleted.status_code == 204
    else:
        method_id = await payments.add_method(str(uuid.uuid4()))
    command = charge_command(method_id, user)
    pid = str(command.payment_id)
    await payments.send(command)

    [outcome] = await payments.events(pid, until=1)
    assert outcome.type == contract.PaymentFailed.TYPE
    assert outcome.data["failure_code"] == "payment_method_invalid"
    payment = await payments.wait_status(pid, "failed")
    assert payment.attempts == 0
    assert await payments.sandbox.charges(f"pay-{pid}") == []


async def test_an_amount_the_provider_cannot_take_fails_at_once(payments: Payments) -> None:
    command = await payments.new_charge(amount=0)
    pid = str(command.payment_id)
    await payments.send(command)
    [outcome] = await payments.events(pid, until=1)
    assert outcome.type == contract.PaymentFailed.TYPE
    assert outcome.data["failure_code"] == "invalid_request"
    assert await payments.sandbox.charges(f"pay-{pid}") == []


async def test_outcomes_are_counted_in_the_metrics(payments: Payments) -> None:
    async def succeeded_count() -> float:
        metrics = (await payments.client.get("/metrics")).text
        for line in metrics.splitlines():
            if line.startswith('bazaar_payments_total{outcome="succeeded"}'):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = await succeeded_count()
    command = await payments.new_charge()
    await payments.send(command)
    await payments.wait_status(command.payment_id, "succeeded")

    async def counted() -> bool:
        return await succeeded_count() >= before + 1

    await wait_for(counted, message="the succeeded outcome in /metrics")


async def test_a_command_transaction_claims_the_first_charge_sent_after_its_commit(
    payments: Payments,
) -> None:
    command = await payments.new_charge()
    pid = str(command.payment_id)
    handlers = command_handlers(payments.processor)

    async with transaction(payments.sessions) as session:
        await handlers[command.TYPE](session, envelope_of(command, key=pid))
        recorded = await repository.get_payment(session, command.payment_id)
        # Recorded as the processor's claim would mark it: committed before the charge.
        assert recorded is not None and recorded.status == "processing"
        assert recorded.attempts == 1 and recorded.claim_token is not None
        assert await payments.sandbox.charges(f"pay-{pid}") == []

    payment = await payments.wait_status(pid, "succeeded")
    assert payment.claim_token is None and payment.claimed_until is None
    assert payment.next_check_at is None and payment.attempts == 1
    assert [(a.kind, a.outcome) for a in await payments.attempts(pid)] == [("charge", "succeeded")]
    assert len(await payments.sandbox.charges(f"pay-{pid}")) == 1


async def test_a_rolled_back_command_transaction_sends_no_charge(payments: Payments) -> None:
    command = await payments.new_charge()
    pid = str(command.payment_id)
    handlers = command_handlers(payments.processor)

    async def handle_in_a_batch_that_fails() -> None:
        async with transaction(payments.sessions) as session:
            await handlers[command.TYPE](session, envelope_of(command, key=pid))
            raise RuntimeError("a later handler of the batch failed")

    # A later command of the batch fails: the consumer rolls the transaction back...
    with pytest.raises(RuntimeError):
        await handle_in_a_batch_that_fails()
    assert await payments.payment(pid) is None
    assert await payments.sandbox.charges(f"pay-{pid}") == []

    # ...and handles the command again: one charge, sent by the second transaction only.
    async with transaction(payments.sessions) as session:
        await handlers[command.TYPE](session, envelope_of(command, key=pid))
    await payments.wait_status(pid, "succeeded")
    assert [(a.kind, a.outcome) for a in await payments.attempts(pid)] == [("charge", "succeeded")]
    assert len(await payments.sandbox.charges(f"pay-{pid}")) == 1


async def test_a_charge_and_its_cancel_in_one_transaction_never_charge(
    payments: Payments,
) -> None:
    command = await payments.new_charge()
    pid = str(command.payment_id)
    cancel = contract.CancelPayment(payment_id=command.payment_id, reason="out_of_stock")
    handlers = command_handlers(payments.processor)

    async with transaction(payments.sessions) as session:
        await handlers[command.TYPE](session, envelope_of(command, key=pid))
        await handlers[cancel.TYPE](session, envelope_of(cancel, key=pid))

    events = await payments.events(pid, until=2)
    assert [event.type for event in events] == [
        contract.PaymentFailed.TYPE,
        contract.PaymentCancelled.TYPE,
    ]
    assert events[0].data["failure_code"] == "cancelled"
    payment = await payments.wait_status(pid, "failed")
    assert payment.attempts == 0 and payment.claim_token is None
    assert payment.next_check_at is None
    assert await payments.attempts(pid) == []
    assert await payments.sandbox.charges(f"pay-{pid}") == []
