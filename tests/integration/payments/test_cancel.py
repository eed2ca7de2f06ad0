"""CancelPayment and the HTTP cancel: void what was not charged, refund what was."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy.engine import URL

from bazaar.contracts import payments as contract
from bazaar.kit.config import PlatformSettings
from bazaar.kit.testing import TokenIssuer
from tests.integration.payments.conftest import (
    API_KEY,
    CARDS,
    Payments,
    Sandbox,
    charge_command,
    payments_service,
)


def cancel(payment_id: uuid.UUID | str, reason: str = "user_request") -> contract.CancelPayment:
    return contract.CancelPayment(payment_id=uuid.UUID(str(payment_id)), reason=reason)


async def refunds_at_provider(sandbox: Sandbox, charge_id: str) -> list[dict[str, object]]:
    async with httpx.AsyncClient(
        base_url=sandbox.url, headers={"Authorization": f"Bearer {API_KEY}"}
    ) as client:
        response = await client.get(f"/v1/charges/{charge_id}/refunds")
    items: list[dict[str, object]] = response.json()["items"]
    return items


async def test_cancelling_a_succeeded_payment_refunds_it_in_full(payments: Payments) -> None:
    user = str(uuid.uuid4())
    method_id = await payments.add_method(user)
    command = charge_command(method_id, user, amount=5000)
    pid = str(command.payment_id)
    await payments.send(command)
    await payments.wait_status(pid, "succeeded")

    await payments.send(cancel(pid), correlation_id="refund-saga")
    events = await payments.events(pid, until={contract.PaymentRefunded.TYPE})
    refunded = events[-1]
    assert refunded.type == contract.PaymentRefunded.TYPE
    assert refunded.data["refunded_amount"] == 5000
    assert refunded.correlationid == "refund-saga"

    payment = await payments.wait_status(pid, "refunded")
    assert payment.refunded_amount == 5000
    [charge] = await payments.sandbox.charges(f"pay-{pid}")
    assert charge["refunded_amount"] == 5000 and charge["refunded"] is True
    read = await payments.client.get(f"/api/payments/{pid}", headers=payments.user(user))
    assert read.json()["status"] == "refunded" and read.json()["refunded_amount"] == 5000

    # Cancelled again: the same answer, no second refund.
    await payments.send(cancel(pid))
    again = await payments.events(pid, until=3)
    assert [event.type for event in again] == [
        contract.PaymentSucceeded.TYPE,
        contract.PaymentRefunded.TYPE,
        contract.PaymentRefunded.TYPE,
    ]
    assert len(await refunds_at_provider(payments.sandbox, charge["id"])) == 1


async def test_support_cancels_over_http_and_the_refund_follows(payments: Payments) -> None:
    user = str(uuid.uuid4())
    method_id = await payments.add_method(user)
    created = await payments.client.post(
        "/api/payments",
        json={
            "amount": 1234,
            "currency": "GBP",
            "payment_method_id": method_id,
            "reference_type": "auction",
            "reference_id": str(uuid.uuid4()),
        },
        headers=payments.service(),
    )
    pid = created.json()["id"]

    for roles in (["customer"], ["customer", "seller"]):
        refused = await payments.client.post(
            f"/api/payments/{pid}/cancel", headers=payments.tokens.headers(user, roles)
        )
        assert refused.status_code == 403
    accepted = await payments.client.post(
        f"/api/payments/{pid}/cancel", json={"reason": "fraud"}, headers=payments.support()
    )
    assert accepted.status_code == 202
    assert accepted.json()["id"] == pid

    await payments.wait_status(pid, "refunded")
    [charge] = await payments.sandbox.charges(f"pay-{pid}")
    assert charge["refunded_amount"] == 1234
    unknown = await payments.client.post(
        f"/api/payments/{uuid.uuid4()}/cancel", headers=payments.support()
    )
    assert unknown.status_code == 404


async def test_cancelling_a_pending_payment_never_charges_it(
    database: URL, platform_settings: PlatformSettings, token_issuer: TokenIssuer, sandbox: Sandbox
) -> None:
    user = str(uuid.uuid4())
    # A replica that records commands but does not process payments keeps it pending.
    async with payments_service(
        database, platform_settings, token_issuer, sandbox, process_payments=False
    ) as idle:
        method_id = await idle.add_method(user)
        command = charge_command(method_id, user)
        pid = str(command.payment_id)
        await idle.send(command)
        await idle.wait_status(pid, "pending")
        await idle.send(cancel(pid))
        events = await idle.events(pid, until=2)
        assert [event.type for event in events] == [
            contract.PaymentFailed.TYPE,
            contract.PaymentCancelled.TYPE,
        ]
        assert events[0].data["failure_code"] == "cancelled"

    async with payments_service(database, platform_settings, token_issuer, sandbox) as working:
        # A later payment goes through: the processor has looked at what was due.
        later = charge_command(method_id, user)
        await working.send(later)
        await working.wait_status(later.payment_id, "succeeded")
        payment = await working.payment(pid)
        assert payment is not None and payment.status == "failed" and payment.attempts == 0
        assert await sandbox.charges(f"pay-{pid}") == []
        # The saga sends the charge again: the same final answer, still no charge.
        await working.send(command)
        events = await working.events(pid, until=3)
        # The final answer again (a voided payment's answer is PaymentFailed, which may be
        # followed by its PaymentCancelled once more): never a success, never a charge.
        again = [event.type for event in events[2:]]
        assert again[0] == contract.PaymentFailed.TYPE
        assert contract.PaymentSucceeded.TYPE not in again
        assert await sandbox.charges(f"pay-{pid}") == []


async def test_a_cancel_that_overtakes_its_charge_stops_it(payments: Payments) -> None:
    command = await payments.new_charge()
    pid = str(command.payment_id)
    await payments.send(cancel(pid), correlation_id="cancel-first")
    await payments.send(command, correlation_id="charge")

    events = await payments.events(pid, until=2)
    assert [(event.type, event.correlationid) for event in events] == [
        (contract.PaymentFailed.TYPE, "charge"),
        (contract.PaymentCancelled.TYPE, "cancel-first"),
    ]
    assert (await payments.wait_status(pid, "failed")).failure_code == "cancelled"
    assert await payments.sandbox.charges(f"pay-{pid}") == []


async def test_a_cancel_while_the_outcome_is_unknown_refunds_the_charge_found(
    payments: Payments,
) -> None:
    user = str(uuid.uuid4())
    method_id = await payments.add_method(user, CARDS["answers_late"])
    command = charge_command(method_id, user, amount=900)
    pid = str(command.payment_id)
    await payments.send(command)
    await payments.events(pid, until={contract.PaymentProcessing.TYPE})

    await payments.send(cancel(pid))
    events = await payments.events(pid, until={contract.PaymentRefunded.TYPE})
    assert [event.type for event in events] == [
        contract.PaymentProcessing.TYPE,
        contract.PaymentSucceeded.TYPE,
        contract.PaymentRefunded.TYPE,
    ]
    payment = await payments.wait_status(pid, "refunded")
    assert payment.refunded_amount == 900
    [charge] = await payments.sandbox.charges(f"pay-{pid}")
    assert charge["refunded_amount"] == 900


async def test_cancelling_a_failed_payment_gives_nothing_back(payments: Payments) -> None:
    user = str(uuid.uuid4())
    method_id = await payments.add_method(user, CARDS["declines"])
    command = charge_command(method_id, user)
    pid = str(command.payment_id)
    await payments.send(command)
    await payments.wait_status(pid, "failed")

    await payments.send(cancel(pid))
    events = await payments.events(pid, until=2)
    assert [event.type for event in events] == [
        contract.PaymentFailed.TYPE,
        contract.PaymentCancelled.TYPE,
    ]
    [charge] = await payments.sandbox.charges(f"pay-{pid}")
    assert charge["refunded_amount"] == 0
    assert (await payments.payment(pid)).status == "failed"  # type: ignore[union-attr]
