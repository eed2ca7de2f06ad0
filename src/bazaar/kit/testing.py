"""Test fixtures for the real parts: PostgreSQL, the broker, clean databases, waiting.

Loaded by ``tests/conftest.py`` (``pytest_plugins``). PostgreSQL is the machine's
when ``BAZAAR_TEST_DATABASE_URL`` is set (CI sets it), otherwise an embedded server
started for the session. The broker is always a tansu process started for the
session. Each test gets its own databases (copied from a migrated template, which
is fast) and its own topic prefix, so tests never see each other's data or messages.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import jwt
import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from jwt.algorithms import RSAAlgorithm
from sqlalchemy import text
from sqlalchemy.engine import URL

from bazaar.kit.config import PlatformSettings
from bazaar.kit.db import (
    async_url,
    create_engine,
    database_url,
    drop_database,
    ensure_database,
    migrate,
    migrations_dir,
)
from bazaar.kit.messaging.envelope import Envelope
from bazaar.kit.messaging.kafka import topic_name
from bazaar.stack.broker import EmbeddedBroker
from bazaar.stack.ports import free_port
from bazaar.stack.postgres import EmbeddedPostgres

T = TypeVar("T")
TEST_ISSUER = "https://bazaar.test/auth"
TEST_AUDIENCE = "bazaar"


async def wait_for(
    condition: Callable[[], Awaitable[T | None] | T | None],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "condition",
) -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds.

    The one place tests wait: always for a condition, always with a deadline.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        result = condition()
        if asyncio.iscoroutine(result) or isinstance(result, Awaitable):
            result = await result
        if result:
            return result
        last = result
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {message} (last: {last!r})"
            )
        await asyncio.sleep(interval)


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[URL]:
    """The admin URL of the PostgreSQL server the tests use."""
    configured = os.environ.get("BAZAAR_TEST_DATABASE_URL")
    if configured:
        yield async_url(configured)
        return
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data")
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    """A tansu broker for the whole session (tests may restart it)."""
    process = EmbeddedBroker()
    process.start()
    try:
        yield process
    finally:
        process.stop()


class TokenIssuer:
    """Signs access tokens the way the auth service does, with a key of the test session's.

    Its JWKS is served over real HTTP (fixture ``token_issuer``), so services under test
    fetch and cache keys exactly as in production.
    """

    def __init__(self, issuer: str = TEST_ISSUER, audience: str = TEST_AUDIENCE) -> None:
        self.issuer = issuer
        self.audience = audience
        self.kid = f"test-{uuid.uuid4().hex[:8]}"
        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.jwks_url = ""

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(RSAAlgorithm.to_jwk(self.private_key.public_key()))
        jwk.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        return {"keys": [jwk]}

    def mint(
        self,
        subject: str | None = None,
        roles: Sequence[str] = ("customer",),
        *,
        ttl: int = 900,
        **claims: Any,
    ) -> str:
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject or str(uuid.uuid4()),
            "iat": now,
            "exp": now + ttl,
            "jti": uuid.uuid4().hex,
            "roles": list(roles),
        }
        payload.update(claims)
        return jwt.encode(payload, self.private_key, algorithm="RS256", headers={"kid": self.kid})

    def headers(
        self, subject: str | None = None, roles: Sequence[str] = ("customer",)
    ) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.mint(subject, roles)}"}


async def serve_jwks(issuer: TokenIssuer) -> web.AppRunner:
    """Serve ``issuer``'s JWKS on a free local port (its ``jwks_url`` says where); the
    caller cleans the runner up."""

    async def jwks(_: web.Request) -> web.Response:
        return web.json_response(issuer.jwks())

    app = web.Application()
    app.router.add_get("/jwks.json", jwks)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    issuer.jwks_url = f"http://127.0.0.1:{port}/jwks.json"
    return runner


@pytest.fixture(scope="session")
async def token_issuer() -> AsyncIterator[TokenIssuer]:
    """A :class:`TokenIssuer` whose JWKS is served on a free local port."""
    issuer = TokenIssuer()
    runner = await serve_jwks(issuer)
    try:
        yield issuer
    finally:
        await runner.cleanup()


@pytest.fixture
def platform_settings(broker: EmbeddedBroker, token_issuer: TokenIssuer) -> PlatformSettings:
    """Platform settings pointing at the test broker and token issuer, with a topic prefix
    of this test's own."""
    return PlatformSettings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        log_format="console",
        kafka_session_timeout_ms=2000,
        kafka_heartbeat_interval_ms=300,
        auth_issuer=token_issuer.issuer,
        auth_audience=token_issuer.audience,
        jwks_url=token_issuer.jwks_url,
    )


@asynccontextmanager
async def running_app(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run a FastAPI app's lifespan in this process and give a client that talks to it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service.test") as client:
            yield client


async def read_topic(
    platform: PlatformSettings,
    topic: str,
    *,
    until: Callable[[list[Envelope]], bool],
    timeout: float = 10.0,
) -> list[Envelope]:
    """Read ``topic`` (contract name; the test's prefix is added) from the beginning until
    ``until(envelopes)`` holds, or fail after ``timeout`` seconds."""
    consumer = AIOKafkaConsumer(
        topic_name(platform, topic),
        bootstrap_servers=platform.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        metadata_max_age_ms=1000,
    )
    await consumer.start()
    seen: list[Envelope] = []
    deadline = time.monotonic() + timeout
    try:
        while not until(seen):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out reading {topic}; saw {[e.type for e in seen]}")
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                seen.extend(Envelope.from_bytes(record.value) for record in records)
    finally:
        await consumer.stop()
    return seen


class DatabaseFactory:
    """Makes clean, migrated databases for a service: one migrated template, copies per test."""

    def __init__(self, server_url: URL, run_id: str) -> None:
        self.server_url = server_url
        self.run_id = run_id
        self._templates: dict[str, str] = {}
        self._lock = asyncio.Lock()
        self.created: list[str] = []

    async def template(self, package: str) -> str:
        async with self._lock:
            if package not in self._templates:
                directory = migrations_dir(package)
                digest = _tree_digest(directory)
                name = f"bzt_{package.rsplit('.', 1)[-1]}_{digest}"
                # Test processes running side by side (pytest -n) make each template once.
                async with _server_lock(self.server_url, name):
                    if await ensure_database(self.server_url, name):
                        try:
                            await migrate(directory, database_url(self.server_url, name))
                        except BaseException:
                            await drop_database(self.server_url, name)
                            raise
                self._templates[package] = name
            return self._templates[package]

    async def create(self, package: str) -> URL:
        """A new database with ``package``'s migrations applied."""
        template = await self.template(package)
        name = f"bz_{package.rsplit('.', 1)[-1]}_{self.run_id}_{uuid.uuid4().hex[:8]}"
        await ensure_database(self.server_url, name, template=template)
        self.created.append(name)
        return database_url(self.server_url, name)

    async def drop_all(self) -> None:
        for name in self.created:
            await drop_database(self.server_url, name)
        self.created.clear()


@asynccontextmanager
async def _server_lock(server_url: URL, name: str) -> AsyncIterator[None]:
    """A PostgreSQL advisory lock named ``name``, held on the server of ``server_url``."""
    engine = create_engine(server_url, pooled=False)
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
            try:
                yield
            finally:
                await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
    finally:
        await engine.dispose()


def _tree_digest(directory: Path) -> str:
    """A short hash of a migrations tree: a changed migration gets a fresh template."""
    digest = hashlib.sha256()
    for path in sorted(directory.rglob("*.py")):
        digest.update(path.relative_to(directory).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


@pytest.fixture(scope="session")
async def database_factory(postgres_url: URL) -> AsyncIterator[DatabaseFactory]:
    factory = DatabaseFactory(postgres_url, uuid.uuid4().hex[:6])
    try:
        yield factory
    finally:
        await factory.drop_all()
