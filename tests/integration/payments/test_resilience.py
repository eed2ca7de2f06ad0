"""Crashes, restarts and a provider that goes away: no payment is lost or charged twice."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.engine import URL

from bazaar.contracts import payments as contract
from bazaar.kit.config import PlatformSettings
from bazaar.kit.db import transaction
from bazaar.kit.testing import TokenIssuer, read_topic, wait_for
from bazaar.payments import service
from bazaar.payments.models import Payment
from tests.integration.payments.conftest import (
    API_KEY,
    CARDS,
    SLOW_CARD_DELAY_SECONDS,
    Payments,
    Sandbox,
    charge_command,
    payments_service,
)
from tests.integration.processes import AppProcess


@pytest.fixture
async def payments_process(
    database: URL, platform_settings: PlatformSettings, sandbox: Sandbox, tmp_path: Path
) -> AsyncIterator[AppProcess]:
    """The payments service as its own process, so that it can be killed."""
    env = {
        "BAZAAR_PAYMENTS_DATABASE_URL": database.render_as_string(hide_password=False),
        "BAZAAR_PAYMENTS_PSP_URL": sandbox.url,
        "BAZAAR_PAYMENTS_PSP_API_KEY": API_KEY,
        # Waits for the slow card's answer longer than the test takes to kill it.
        "BAZAAR_PAYMENTS_PROVIDER_TIMEOUT_SECONDS": str(SLOW_CARD_DELAY_SECONDS - 2),
        "BAZAAR_PAYMENTS_CLAIM_LEASE_SECONDS": str(2.5 * (SLOW_CARD_DELAY_SECONDS - 2)),
        "BAZAAR_KAFKA_BOOTSTRAP_SERVERS": platform_settings.kafka_bootstrap_servers,
        "BAZAAR_TOPIC_PREFIX": platform_settings.topic_prefix,
        "BAZAAR_KAFKA_SESSION_TIMEOUT_MS": "2000",
        "BAZAAR_KAFKA_HEARTBEAT_INTERVAL_MS": "300",
        "BAZAAR_AUTH_ISSUER": platform_settings.auth_issuer,
        "BAZAAR_AUTH_AUDIENCE": platform_settings.auth_audience,
        "BAZAAR_JWKS_URL": platform_settings.jwks_url,
    }
    process = AppProcess(
        "bazaar.payments.app:create_app", env, tmp_path / "payments.log", ready_path="/readyz"
    )
    await process.start()
    try:
        yield process
    finally:
        process.kill()


async def test_a_payment_left_processing_by_a_killed_process_is_finished_by_the_next(
    payments_process: AppProcess,
    database: URL,
    platform_settings: PlatformSettings,
    token_issuer: TokenIssuer,
    sandbox: Sandbox,
) -> None:
    user = str(uuid.uuid4())
    reference = str(uuid.uuid4())
    async with httpx.AsyncClient(base_url=payments_process.url, timeout=30) as client:
        method = await client.post(
            "/api/payments/methods",
            json={
                "card_number": CARDS["answers_late"],
                "exp_month": 1,
                "exp_year": 2090,
                "cvc": "321",
            },
            headers=token_issuer.headers(user),
        )
        assert method.status_code == 201, method.text
        body = {
            "amount": 3100,
            "currency": "EUR",
            "payment_method_id": method.json()["id"],
            "reference_type": "order",
            "reference_id": reference,
        }
        request = asyncio.create_task(
            client.post(
                "/api/payments", json=body, headers=token_issuer.headers("orders", ["service"])
            )
        )

        async def charged() -> list[dict[str, Any]]:
            return [
                charge
                for charge in await sandbox.charges()
                if charge["metadata"].get("reference_id") == reference
            ]

        # The provider has made the charge; its answer is still held back: kill now.
        [charge] = await wait_for(charged, message="the charge at the provider")
        payments_process.kill()
        with contextlib.suppress(httpx.HTTPError):
            await request

    payment_id = charge["metadata"]["payment_id"]
    assert charge["idempotency_key"] == f"pay-{payment_id}"
    async with payments_service(database, platform_settings, token_issuer, sandbox) as restarted:
        left = await restarted.payment(payment_id)
        assert left is not None and left.status == "processing"
        assert left.claimed_until is not None  # the dead process's claim, still running

        payment = await restarted.wait_status(payment_id, "succeeded", timeout=40)
        assert payment.provider_charge_id == charge["id"]
        assert await sandbox.charges(f"pay-{payment_id}") == [
            {**charge, "refunded": False, "refunded_amount": 0}
        ]
        events = await read_topic(
            platform_settings,
            contract.TOPIC,
            until=lambda seen: any(e.type == contract.PaymentSucceeded.TYPE for e in seen),
        )
        assert [
            e.data["payment_id"] for e in events if e.type == contract.PaymentSucceeded.TYPE
        ] == [payment_id]


async def test_charges_wait_out_a_provider_outage(
    database: URL, platform_settings: PlatformSettings, token_issuer: TokenIssuer, tmp_path: Path
) -> None:
    provider = Sandbox(tmp_path / "psp", tmp_path / "psp.log")
    await provider.start()
    try:
        async with payments_service(
            database, platform_settings, token_issuer, provider
        ) as payments:
            user = str(uuid.uuid4())
            method_id = await payments.add_method(user)
            provider.stop()

            command = charge_command(method_id, user)
            pid = str(command.payment_id)
            await payments.send(command)

            async def refused_twice() -> bool:
                attempts = await payments.attempts(pid)
                return len([a for a in attempts if a.outcome == "transient_error"]) >= 2

            await wait_for(refused_twice, message="calls refused while the provider is down")
            payment = await payments.payment(pid)
            assert payment is not None and payment.status == "processing"

            await provider.start()
            payment = await payments.wait_status(pid, "succeeded")
            assert len(await provider.charges(f"pay-{pid}")) == 1
            kinds = {(a.kind, a.outcome) for a in await payments.attempts(pid)}
            assert ("charge", "transient_error") in kinds
    finally:
        provider.stop()


async def test_two_replicas_never_work_on_the_same_payment(
    database: URL, platform_settings: PlatformSettings, token_issuer: TokenIssuer, sandbox: Sandbox
) -> None:
    async with (
        payments_service(database, platform_settings, token_issuer, sandbox) as first,
        payments_service(database, platform_settings, token_issuer, sandbox) as second,
    ):
        user = str(uuid.uuid4())
        method_id = await first.add_method(user)
        commands = [charge_command(method_id, user, amount=100 + n) for n in range(12)]
        await first.send(*commands)
        for command in commands:
            await second.wait_status(command.payment_id, "succeeded")

        async with first.sessions() as session:
            payments = list((await session.execute(select(Payment))).scalars())
        assert {p.attempts for p in payments} == {1}
        for command in commands:
            pid = command.payment_id
            assert len(await sandbox.charges(f"pay-{pid}")) == 1
            assert [a.kind for a in await first.attempts(pid)] == ["charge"]


async def test_a_first_charge_claimed_by_a_replica_that_died_is_charged_once_by_another(
    payments: Payments,
) -> None:
    command = await payments.new_charge()
    pid = str(command.payment_id)
    # A replica's command transaction recorded the payment claimed and processing; the
    # replica died after the commit, before it sent the charge.
    claim = service.ChargeClaim(token=uuid.uuid4(), lease=timedelta(seconds=1))
    async with transaction(payments.sessions) as session:
        assert await service.request_charge(session, command, "saga", claim=claim) is not None
    left = await payments.payment(pid)
    assert left is not None and left.status == "processing" and left.claim_token == claim.token

    # Its claim runs out; a processor asks the provider first, finds nothing, charges once.
    payment = await payments.wait_status(pid, "succeeded", timeout=30)
    assert payment.attempts == 2 and payment.claim_token is None
    assert [(a.kind, a.outcome) for a in await payments.attempts(pid)] == [
        ("lookup", "not_found"),
        ("charge", "succeeded"),
    ]
    assert len(await payments.sandbox.charges(f"pay-{pid}")) == 1
