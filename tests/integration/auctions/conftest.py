"""Two replicas of the auctions service on one fresh database, with a real broker.

Payments and the gateway are other services: the tests play their part. A real HTTP
stand-in serves what auctions asks the gateway (a client-credentials token, and
``GET /api/payments/methods/{id}``), and :class:`PaymentsPeer` reads the ChargePayment
commands on the broker and answers them with PaymentSucceeded / PaymentFailed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from aiohttp import web
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bazaar.auctions.app import create_app
from bazaar.auctions.settings import AuctionsSettings
from bazaar.contracts import auctions as auction_events
from bazaar.contracts import payments
from bazaar.contracts.topics import DEAD_LETTER
from bazaar.kit.config import PlatformSettings
from bazaar.kit.db import create_engine, create_session_factory
from bazaar.kit.messaging.envelope import Envelope
from bazaar.kit.messaging.kafka import ensure_topics
from bazaar.kit.testing import DatabaseFactory, TokenIssuer, read_topic, running_app, wait_for
from bazaar.stack.ports import free_port
from tests.integration.peers import envelope_of, payment_outcome, send

AUCTIONS = "/api/auctions"


# --- the gateway's part: tokens and payment methods ------------------------------------


class PaymentMethodsStandIn:
    """Answers what auctions asks through the gateway, over real HTTP."""

    def __init__(self) -> None:
        self.owners: dict[uuid.UUID, uuid.UUID] = {}
        self.lookups = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    def add(self, user_id: uuid.UUID) -> uuid.UUID:
        method_id = uuid.uuid4()
        self.owners[method_id] = user_id
        return method_id

    async def _token(self, _: web.Request) -> web.Response:
        return web.json_response(
            {"access_token": "service-token", "token_type": "Bearer", "expires_in": 900}
        )

    async def _method(self, request: web.Request) -> web.Response:
        self.lookups += 1
        if request.headers.get("Authorization") != "Bearer service-token":
            return web.json_response({"code": "invalid_token"}, status=401)
        method_id = uuid.UUID(request.match_info["method_id"])
        owner = self.owners.get(method_id)
        if owner is None:
            return web.json_response({"code": "not_found"}, status=404)
        return web.json_response(
            {"id": str(method_id), "user_id": str(owner), "brand": "visa", "last4": "4242"}
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/auth/token", self._token)
        app.router.add_get("/api/payments/methods/{method_id}", self._method)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def payment_methods() -> AsyncIterator[PaymentMethodsStandIn]:
    stand_in = PaymentMethodsStandIn()
    await stand_in.start()
    try:
        yield stand_in
    finally:
        await stand_in.stop()


# --- payments' part on the broker -----------------------------------------------------


class PaymentsPeer:
    """Reads the ChargePayment commands auctions sends and answers them as payments would."""

    def __init__(self, platform: PlatformSettings) -> None:
        self.platform = platform

    async def commands(
        self, auction_id: str, count: int, *, timeout: float = 20.0
    ) -> list[Envelope]:
        """The payment commands about ``auction_id`` (at least ``count``), in the order they
        were made (commands are keyed by payment, so partitions interleave them)."""

        def about(envelopes: list[Envelope]) -> list[Envelope]:
            return sorted(
                (e for e in envelopes if e.correlationid == auction_id), key=lambda e: e.time
            )

        seen = await read_topic(
            self.platform,
            payments.COMMANDS_TOPIC,
            until=lambda envelopes: len(about(envelopes)) >= count,
            timeout=timeout,
        )
        return about(seen)

    async def charges(
        self, auction_id: str, count: int, *, timeout: float = 20.0
    ) -> list[payments.ChargePayment]:
        """The ChargePayment commands about ``auction_id`` (at least ``count``), oldest first."""

        def charges_in(envelopes: list[Envelope]) -> list[Envelope]:
            return sorted(
                (
                    e
                    for e in envelopes
                    if e.correlationid == auction_id and e.type == payments.ChargePayment.TYPE
                ),
                key=lambda e: e.time,
            )

        seen = await read_topic(
            self.platform,
            payments.COMMANDS_TOPIC,
            until=lambda envelopes: len(charges_in(envelopes)) >= count,
            timeout=timeout,
        )
        return [payments.ChargePayment.model_validate(e.data) for e in charges_in(seen)]

    async def answer(
        self, charge: payments.ChargePayment, *, failure_code: str | None = None
    ) -> None:
        """PaymentSucceeded, or PaymentFailed with ``failure_code``."""
        outcome = (
            payment_outcome(charge, "succeeded")
            if failure_code is None
            else payment_outcome(charge, "failed", failure_code=failure_code)
        )
        await self.publish(outcome, key=str(charge.payment_id), correlation=charge.reference_id)

    async def publish(
        self, message: payments.PaymentOutcome, *, key: str, correlation: uuid.UUID
    ) -> None:
        envelope = envelope_of(
            message, key=key, source="bazaar/payments", correlation_id=str(correlation)
        )
        await send(self.platform, payments.TOPIC, [envelope], key=key)


# --- the replicas ---------------------------------------------------------------------


@dataclass
class User:
    id: uuid.UUID
    headers: dict[str, str]
    method_id: uuid.UUID


@dataclass
class Auctions:
    """Two replicas of the service (``clients[0]`` and ``clients[1]``) on one database."""

    clients: list[httpx.AsyncClient]
    apps: list[FastAPI]
    issuer: TokenIssuer
    methods: PaymentMethodsStandIn
    platform: PlatformSettings
    payments: PaymentsPeer
    sessions: async_sessionmaker[AsyncSession]
    settings: AuctionsSettings
    stacks: list[AsyncExitStack] = field(default_factory=list)
    stopped: set[int] = field(default_factory=set)

    @property
    def reader(self) -> httpx.AsyncClient:
        """A client of a replica still running (the second one when both are)."""
        running = [n for n in range(len(self.clients)) if n not in self.stopped]
        return self.clients[running[-1]]

    def user(self, *roles: str) -> User:
        user_id = uuid.uuid4()
        return User(
            user_id,
            self.issuer.headers(str(user_id), list(roles or ("customer",))),
            self.methods.add(user_id),
        )

    def seller(self) -> User:
        return self.user("customer", "seller")

    def support(self) -> User:
        return self.user("customer", "support")

    async def stop(self, replica: int) -> None:
        """Shut one replica down (its lifespan ends: scheduler, hub, consumer stop)."""
        self.stopped.add(replica)
        await self.stacks[replica].aclose()

    async def create(self, seller: User, replica: int = 0, **overrides: Any) -> dict[str, Any]:
        response = await self.clients[replica].post(
            AUCTIONS, json=an_auction(**overrides), headers=seller.headers
        )
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    async def bid(
        self,
        auction_id: str,
        bidder: User,
        amount: int,
        *,
        max_amount: int | None = None,
        replica: int = 0,
        key: str | None = None,
    ) -> httpx.Response:
        body: dict[str, Any] = {"amount": amount, "payment_method_id": str(bidder.method_id)}
        if max_amount is not None:
            body["max_amount"] = max_amount
        headers = dict(bidder.headers)
        if key is not None:
            headers["Idempotency-Key"] = key
        return await self.clients[replica].post(
            f"{AUCTIONS}/{auction_id}/bids", json=body, headers=headers
        )

    async def get(self, auction_id: str, viewer: User | None = None) -> dict[str, Any]:
        response = await self.reader.get(
            f"{AUCTIONS}/{auction_id}", headers=viewer.headers if viewer else None
        )
        assert response.status_code == 200, response.text
        auction: dict[str, Any] = response.json()
        return auction

    async def bids(self, auction_id: str, viewer: User | None = None) -> list[dict[str, Any]]:
        """Every bid, oldest first."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params = {"limit": "100", **({"cursor": cursor} if cursor else {})}
            response = await self.reader.get(
                f"{AUCTIONS}/{auction_id}/bids",
                params=params,
                headers=viewer.headers if viewer else None,
            )
            assert response.status_code == 200, response.text
            page = response.json()
            items.extend(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                return list(reversed(items))

    async def wait_status(
        self, auction_id: str, *statuses: str, timeout: float = 10.0
    ) -> dict[str, Any]:
        async def reached() -> dict[str, Any] | None:
            auction = await self.get(auction_id)
            return auction if auction["status"] in statuses else None

        return await wait_for(
            reached, timeout=timeout, message=f"auction {auction_id} to be {statuses}"
        )

    async def end_now(self, auction_id: str) -> None:
        """Arrange an auction's end for now (as if its time had run out), so tests about
        what follows the close need not race a short auction against a busy machine."""
        async with self.sessions() as session, session.begin():
            await session.execute(
                text("UPDATE auctions SET ends_at = now() WHERE id = :id"),
                {"id": uuid.UUID(auction_id)},
            )

    async def consumers_ready(self) -> None:
        """Wait until the payment-outcome consumers hold partitions."""
        for app in self.apps:
            consumer = app.state.payments_consumer
            await wait_for(consumer.assigned.is_set, timeout=30, message="consumer assignment")


def an_auction(**overrides: Any) -> dict[str, Any]:
    """A valid auction ending in an hour, with ``ends_in`` (seconds) as a shortcut."""
    now = datetime.now(UTC)
    ends_in = overrides.pop("ends_in", 3600)
    auction: dict[str, Any] = {
        "title": "Bakelite rotary telephone",
        "description": "Black, 1950s, working.",
        "currency": "EUR",
        "starting_price": 1000,
        "min_increment": 100,
        "ends_at": iso(now + timedelta(seconds=ends_in)),
    }
    auction.update(overrides)
    return {name: value for name, value in auction.items() if value is not None}


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.fixture
async def auctions_database(database_factory: DatabaseFactory) -> URL:
    return await database_factory.create("bazaar.auctions")


@pytest.fixture
async def auctions_engine(auctions_database: URL) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(auctions_database, pool_size=8)
    try:
        yield engine
    finally:
        await engine.dispose()


def settings_for(
    database: URL, methods: PaymentMethodsStandIn, **overrides: Any
) -> AuctionsSettings:
    values: dict[str, Any] = {
        "database_url": database.render_as_string(hide_password=False),
        "database_pool_size": 4,
        "bid_pool_size": 4,
        "payment_methods_url": methods.url,
        "client_id": "auctions",
        "client_secret": "auctions-secret",
        "scheduler_interval_seconds": 0.1,
        "stream_heartbeat_seconds": 1.0,
        "freeze_startup_objects": False,
    }
    values.update(overrides)
    return AuctionsSettings(**values)


@asynccontextmanager
async def two_replicas(
    database: URL,
    engine: AsyncEngine,
    platform: PlatformSettings,
    issuer: TokenIssuer,
    methods: PaymentMethodsStandIn,
    **overrides: Any,
) -> AsyncIterator[Auctions]:
    await ensure_topics(
        platform,
        [auction_events.TOPIC, payments.TOPIC, payments.COMMANDS_TOPIC, DEAD_LETTER],
    )
    settings = settings_for(database, methods, **overrides)
    apps = [create_app(settings, platform), create_app(settings, platform)]
    stacks = [AsyncExitStack(), AsyncExitStack()]
    clients = [
        await stack.enter_async_context(running_app(app))
        for stack, app in zip(stacks, apps, strict=True)
    ]
    market = Auctions(
        clients=clients,
        apps=apps,
        issuer=issuer,
        methods=methods,
        platform=platform,
        payments=PaymentsPeer(platform),
        sessions=create_session_factory(engine),
        settings=settings,
        stacks=stacks,
    )
    try:
        yield market
    finally:
        for stack in reversed(stacks):
            await stack.aclose()


@pytest.fixture
async def market(
    auctions_database: URL,
    auctions_engine: AsyncEngine,
    platform_settings: PlatformSettings,
    token_issuer: TokenIssuer,
    payment_methods: PaymentMethodsStandIn,
) -> AsyncIterator[Auctions]:
    """Two replicas, as deployed (with test-sized timings)."""
    async with two_replicas(
        auctions_database, auctions_engine, platform_settings, token_issuer, payment_methods
    ) as replicas:
        yield replicas


# --- real HTTP servers, for the event stream ------------------------------------------


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free port in this event loop; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        lifespan="on",
        log_level="warning",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    # The test runner owns the signals; the server is stopped through should_exit.
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    try:
        await wait_for(lambda: server.started or task.done(), timeout=30, message="uvicorn")
        if task.done():
            task.result()
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)


@dataclass
class ServerEvent:
    id: int | None
    event: str
    data: dict[str, Any]


async def read_events(
    response: httpx.Response, sink: list[ServerEvent], *, comments: list[str] | None = None
) -> None:
    """Parse an SSE body into ``sink`` until it ends (run as a task, cancel to stop)."""
    import orjson

    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if "data" in fields:
                sink.append(
                    ServerEvent(
                        int(fields["id"]) if "id" in fields else None,
                        fields.get("event", "message"),
                        orjson.loads(fields["data"]),
                    )
                )
            fields = {}
        elif line.startswith(":"):
            if comments is not None:
                comments.append(line)
        else:
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value


def strictly_increasing(values: Sequence[int]) -> bool:
    return all(a < b for a, b in itertools.pairwise(values))
