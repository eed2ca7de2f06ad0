"""The support service in this process on a fresh database, with a real broker, and a
small real HTTP stand-in for the gateway its action worker calls.

Support only reads topics and calls the gateway, so the tests play everyone else: they
publish the messages the other services would (CloudEvents envelopes made with
``new_envelope``, keyed by entity, through a plain aiokafka producer, see
:mod:`tests.integration.support.flows`), and :class:`GatewayStandIn` issues service
tokens like auth and answers the owning services' action routes like they do (or as a
test scripts it), recording every call.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI
from sqlalchemy import text

from bazaar.contracts.topics import ALL_TOPICS
from bazaar.kit.config import PlatformSettings
from bazaar.kit.messaging.envelope import Envelope
from bazaar.kit.messaging.kafka import ensure_topics, topic_name
from bazaar.kit.testing import DatabaseFactory, TokenIssuer, running_app, wait_for
from bazaar.stack.ports import free_port
from bazaar.support.app import create_app
from bazaar.support.settings import SupportSettings
from tests.integration.support.flows import Published

CLIENT_ID = "support"
CLIENT_SECRET = "support-test-secret"
SUPPORT = "/api/support"


@dataclass
class GatewayCall:
    method: str
    path: str
    body: Any
    subject: str | None
    roles: list[str]


@dataclass
class GatewayStandIn:
    """Auth's client-credentials grant and the owning services' action routes."""

    issuer: TokenIssuer
    calls: list[GatewayCall] = field(default_factory=list)
    # Scripted answers per path, used in order; without one: 202 like the real services.
    answers: dict[str, list[tuple[int, Any]]] = field(default_factory=dict)
    url: str = ""
    _tokens: dict[str, list[str]] = field(default_factory=dict)
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/auth/token", self._token)
        app.router.add_post("/api/{tail:.*}", self._action)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def script(self, path: str, *answers: tuple[int, Any]) -> None:
        self.answers.setdefault(path, []).extend(answers)

    def calls_to(self, path: str) -> list[GatewayCall]:
        return [call for call in self.calls if call.path == path]

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if (
            form.get("grant_type") != "client_credentials"
            or form.get("client_id") != CLIENT_ID
            or form.get("client_secret") != CLIENT_SECRET
        ):
            return web.json_response({"error": "invalid_client"}, status=401)
        token = self.issuer.mint(CLIENT_ID, roles=["service"])
        self._tokens[token] = ["service"]
        return web.json_response({"access_token": token, "token_type": "Bearer", "expires_in": 900})

    async def _action(self, request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self._tokens:
            return web.json_response(
                {"status": 401, "code": "invalid_token", "title": "Invalid token"}, status=401
            )
        body = await request.json() if request.can_read_body else None
        self.calls.append(
            GatewayCall(request.method, request.path, body, CLIENT_ID, self._tokens[token])
        )
        scripted = self.answers.get(request.path)
        if scripted:
            status, answer = scripted.pop(0)
            content_type = "application/problem+json" if status >= 400 else "application/json"
            return web.json_response(answer, status=status, content_type=content_type)
        target = request.path.split("/")[3]
        return web.json_response({"id": target, "status": "accepted"}, status=202)


@dataclass
class SupportHarness:
    client: httpx.AsyncClient
    app: FastAPI
    platform: PlatformSettings
    settings: SupportSettings
    gateway: GatewayStandIn
    issuer: TokenIssuer
    producer: AIOKafkaProducer

    def headers(
        self, roles: Sequence[str] = ("support",), subject: str | None = None
    ) -> dict[str, str]:
        return self.issuer.headers(subject or str(uuid.uuid4()), roles)

    async def publish(self, messages: Iterable[Published]) -> list[Envelope]:
        """Put messages on their topics as the owning services' relays would, in order."""
        sent = []
        for message in messages:
            await self.producer.send_and_wait(
                topic_name(self.platform, message.topic),
                value=message.envelope.to_bytes(),
                key=message.key.encode(),
            )
            sent.append(message.envelope)
        return sent

    async def publish_raw(self, topic: str, value: bytes, key: str = "raw") -> None:
        await self.producer.send_and_wait(
            topic_name(self.platform, topic), value=value, key=key.encode()
        )

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.app.state.sessions() as session:
            return await session.scalar(text(sql), params)

    async def recorded(self, ids: Iterable[str]) -> int:
        wanted = list(ids)
        return int(
            await self.scalar("SELECT count(*) FROM events WHERE id = ANY(:ids)", ids=wanted)
        )

    async def wait_recorded(self, envelopes: Sequence[Envelope], timeout: float = 15.0) -> None:
        ids = [envelope.id for envelope in envelopes]

        async def all_there() -> bool:
            return await self.recorded(ids) == len(set(ids))

        await wait_for(all_there, timeout=timeout, message=f"{len(ids)} events in the history")

    async def get(self, path: str, **params: Any) -> httpx.Response:
        return await self.client.get(
            f"{SUPPORT}{path}",
            params={k: v for k, v in params.items() if v is not None},
            headers=self.headers(),
        )


async def start_support(
    database_url: str,
    platform: PlatformSettings,
    *,
    with_credentials: bool = True,
    **overrides: Any,
) -> FastAPI:
    settings = SupportSettings(
        database_url=database_url,
        client_id=CLIENT_ID if with_credentials else "",
        client_secret=CLIENT_SECRET,
        action_poll_seconds=0.2,
        action_retry_seconds=0.05,
        problems_refresh_seconds=0.2,
        ingest_poll_ms=50,
        **overrides,
    )
    return create_app(settings, platform)


@pytest.fixture
async def gateway(token_issuer: TokenIssuer) -> AsyncIterator[GatewayStandIn]:
    stand_in = GatewayStandIn(token_issuer)
    await stand_in.start()
    try:
        yield stand_in
    finally:
        await stand_in.stop()


@pytest.fixture
def support_platform(
    platform_settings: PlatformSettings, gateway: GatewayStandIn
) -> PlatformSettings:
    return platform_settings.model_copy(update={"gateway_url": gateway.url})


@pytest.fixture
async def support_database(database_factory: DatabaseFactory) -> str:
    url = await database_factory.create("bazaar.support")
    return url.render_as_string(hide_password=False)


@pytest.fixture
async def support(
    support_database: str,
    support_platform: PlatformSettings,
    gateway: GatewayStandIn,
    token_issuer: TokenIssuer,
) -> AsyncIterator[SupportHarness]:
    await ensure_topics(support_platform, ALL_TOPICS)
    app = await start_support(support_database, support_platform)
    producer = AIOKafkaProducer(
        bootstrap_servers=support_platform.kafka_bootstrap_servers, acks="all", linger_ms=5
    )
    await producer.start()
    try:
        async with running_app(app) as client:
            await wait_for(
                app.state.history_ingester.assigned.is_set,
                timeout=30,
                message="the history consumer's partitions",
            )
            yield SupportHarness(
                client=client,
                app=app,
                platform=support_platform,
                settings=app.state.support_settings,
                gateway=gateway,
                issuer=token_issuer,
                producer=producer,
            )
    finally:
        await producer.stop()
