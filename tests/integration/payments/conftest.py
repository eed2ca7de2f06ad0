"""Payments on a fresh database with a real broker, and the provider sandbox as a real process.

The sandbox runs once for the session (uvicorn on a free port): every payment has a
key of its own (``pay-<payment id>``), so tests never see each other's charges. Its
"answers late" card holds the answer back longer than the payments service waits.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bazaar.contracts import payments as contract
from bazaar.contracts.base import Message
from bazaar.kit.config import PlatformSettings
from bazaar.kit.db import create_engine, create_session_factory
from bazaar.kit.messaging.envelope import Envelope
from bazaar.kit.messaging.kafka import ensure_topics
from bazaar.kit.testing import DatabaseFactory, TokenIssuer, read_topic, running_app, wait_for
from bazaar.payments.app import create_app
from bazaar.payments.models import Payment, PaymentAttempt
from bazaar.payments.processor import PaymentProcessor
from bazaar.payments.settings import PaymentsSettings
from tests.integration.peers import envelope_of, send
from tests.integration.processes import SandboxProcess

API_KEY = "sk_test_payments"
# Longer than the service's deadline for one call (PROVIDER_TIMEOUT) by a margin.
SLOW_CARD_DELAY_SECONDS = 6.0
PROVIDER_TIMEOUT = 1.5

CARDS = {
    "approves": "4242 4242 4242 4242",
    "declines": "4000 0000 0000 0002",
    "insufficient_funds": "4000 0000 0000 9995",
    "fails_first": "4000 0000 0000 0119",
    "answers_late": "4000 0000 0000 0259",
}


class Sandbox(SandboxProcess):
    """The provider sandbox with the payments tests' key and slow-card delay."""

    def __init__(self, data_dir: Path, output: Path) -> None:
        super().__init__(
            data_dir, output, api_key=API_KEY, slow_card_delay_seconds=SLOW_CARD_DELAY_SECONDS
        )


@pytest.fixture(scope="session")
async def sandbox(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Sandbox]:
    directory = tmp_path_factory.mktemp("psp")
    process = Sandbox(directory / "data", directory / "sandbox.log")
    await process.start()
    try:
        yield process
    finally:
        process.stop()


def settings_for(url: URL, sandbox_url: str, **overrides: Any) -> PaymentsSettings:
    """Short deadlines and waits, so that the slow paths finish in seconds."""
    values: dict[str, Any] = {
        "database_url": url.render_as_string(hide_password=False),
        "psp_url": sandbox_url,
        "psp_api_key": API_KEY,
        "provider_timeout_seconds": PROVIDER_TIMEOUT,
        "provider_retry_backoff_seconds": 0.05,
        "processor_poll_seconds": 0.2,
        "claim_lease_seconds": 4.0,
        "recheck_first_seconds": 0.2,
        "recheck_max_seconds": 1.0,
    }
    values.update(overrides)
    return PaymentsSettings(**values)


class Payments:
    """The service under test and what a test reaches for: its client, its database,
    the broker, the sandbox, and tokens."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        url: URL,
        engine: AsyncEngine,
        platform: PlatformSettings,
        tokens: TokenIssuer,
        sandbox: Sandbox,
        processor: PaymentProcessor,
    ) -> None:
        self.client = client
        self.url = url
        self.engine = engine
        self.sessions: async_sessionmaker[AsyncSession] = create_session_factory(engine)
        self.platform = platform
        self.tokens = tokens
        self.sandbox = sandbox
        # The service's own processor, for tests that run its command handlers directly.
        self.processor = processor

    # --- callers ----------------------------------------------------------------------

    def user(self, user_id: str | None = None) -> dict[str, str]:
        return self.tokens.headers(user_id or str(uuid.uuid4()), ["customer"])

    def service(self) -> dict[str, str]:
        return self.tokens.headers("orders", ["service"])

    def support(self) -> dict[str, str]:
        return self.tokens.headers(str(uuid.uuid4()), ["customer", "support"])

    async def add_method(self, user_id: str, card: str = CARDS["approves"]) -> str:
        response = await self.client.post(
            "/api/payments/methods",
            json={"card_number": card, "exp_month": 12, "exp_year": 2099, "cvc": "123"},
            headers=self.user(user_id),
        )
        assert response.status_code == 201, response.text
        method_id: str = response.json()["id"]
        return method_id

    async def new_charge(self, *, amount: int = 2500) -> contract.ChargePayment:
        """A ChargePayment of a new buyer with a card that approves."""
        user = str(uuid.uuid4())
        return charge_command(await self.add_method(user), user, amount=amount)

    # --- commands and events ------------------------------------------------------------

    async def send(self, *messages: Message | Envelope, correlation_id: str | None = None) -> None:
        """Put commands on the command topic, as a saga's outbox would: in order, each
        keyed by its payment (an envelope's subject)."""
        envelopes = [
            message
            if isinstance(message, Envelope)
            else envelope_of(
                message,
                key=str(getattr(message, "payment_id", "")),
                source="bazaar/tests",
                correlation_id=correlation_id,
            )
            for message in messages
        ]
        # One send per run of messages with one key: the order across keys stays as given.
        for key, same_key in itertools.groupby(envelopes, key=lambda e: e.subject or ""):
            await send(self.platform, contract.COMMANDS_TOPIC, list(same_key), key=key)

    async def events(
        self, payment_id: str, *, until: int | set[str], timeout: float = 20.0
    ) -> list[Envelope]:
        """Outcome events of one payment, read until there are ``until`` of them (a count)
        or until every type in ``until`` was seen."""

        def enough(seen: list[Envelope]) -> bool:
            mine = [event for event in seen if event.subject == payment_id]
            if isinstance(until, int):
                return len(mine) >= until
            return until <= {event.type for event in mine}

        seen = await read_topic(self.platform, contract.TOPIC, until=enough, timeout=timeout)
        return [event for event in seen if event.subject == payment_id]

    # --- state ---------------------------------------------------------------------------

    async def payment(self, payment_id: str | uuid.UUID) -> Payment | None:
        async with self.sessions() as session:
            return await session.get(Payment, uuid.UUID(str(payment_id)))

    async def attempts(self, payment_id: str | uuid.UUID) -> list[PaymentAttempt]:
        async with self.sessions() as session:
            statement = (
                select(PaymentAttempt)
                .where(PaymentAttempt.payment_id == uuid.UUID(str(payment_id)))
                .order_by(PaymentAttempt.id)
            )
            return list((await session.execute(statement)).scalars())

    async def status_is(self, payment_id: str | uuid.UUID, *statuses: str) -> bool:
        payment = await self.payment(payment_id)
        return payment is not None and payment.status in statuses

    async def wait_status(
        self, payment_id: str | uuid.UUID, *statuses: str, timeout: float = 20.0
    ) -> Payment:
        await wait_for(
            lambda: self.status_is(payment_id, *statuses),
            timeout=timeout,
            message=f"payment {payment_id} to be {statuses}",
        )
        payment = await self.payment(payment_id)
        assert payment is not None
        return payment

    async def dump_tables(self) -> str:
        """Every row of every table of the service's database, as text."""
        async with self.engine.connect() as conn:
            tables = (
                await conn.execute(
                    text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                )
            ).scalars()
            dumped = []
            for table in list(tables):
                rows = await conn.execute(text(f'SELECT t::text FROM "{table}" t'))
                dumped.extend(f"{table}: {row}" for row in rows.scalars())
        return "\n".join(dumped)


def charge_command(
    method_id: str, user_id: str, *, amount: int = 2500, payment_id: str | None = None
) -> contract.ChargePayment:
    return contract.ChargePayment(
        payment_id=uuid.UUID(payment_id) if payment_id else uuid.uuid4(),
        user_id=uuid.UUID(user_id),
        payment_method_id=uuid.UUID(method_id),
        amount=amount,
        currency="EUR",
        reference_type="order",
        reference_id=uuid.uuid4(),
    )


@asynccontextmanager
async def payments_service(
    url: URL,
    platform: PlatformSettings,
    tokens: TokenIssuer,
    sandbox: Sandbox,
    **overrides: Any,
) -> AsyncIterator[Payments]:
    """One payments app instance (several may run on one database, like replicas)."""
    engine = create_engine(url, pool_size=4)
    app = create_app(settings_for(url, sandbox.url, **overrides), platform)
    try:
        async with running_app(app) as client:
            yield Payments(client, url, engine, platform, tokens, sandbox, app.state.processor)
    finally:
        await engine.dispose()


@pytest.fixture
async def database(database_factory: DatabaseFactory) -> URL:
    return await database_factory.create("bazaar.payments")


@pytest.fixture
async def payments(
    database: URL,
    platform_settings: PlatformSettings,
    token_issuer: TokenIssuer,
    sandbox: Sandbox,
) -> AsyncIterator[Payments]:
    await ensure_topics(platform_settings, [contract.TOPIC, contract.COMMANDS_TOPIC])
    async with payments_service(database, platform_settings, token_issuer, sandbox) as service:
        yield service
