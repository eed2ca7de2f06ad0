"""What a service process holds while it runs: engine, sessions, verifier, background tasks.

``service_runtime`` is used inside each service's lifespan. It builds the shared
parts from settings, puts them on ``app.state`` for the request dependencies,
registers the readiness checks, runs background loops (outbox relay, consumers,
reapers) and stops everything in reverse order on shutdown.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bazaar.kit.config import PlatformSettings, ServiceSettings
from bazaar.kit.db import create_engine, create_read_session_factory, create_session_factory, ping
from bazaar.kit.logging import get_logger
from bazaar.kit.messaging.relay import OutboxRelay
from bazaar.kit.tokens import JwksCache, TokenVerifier

log = get_logger(__name__)


@dataclass
class ServiceRuntime:
    service: str
    settings: ServiceSettings
    platform: PlatformSettings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    # Without a transaction, for answers read by one statement (create_read_session_factory).
    read_sessions: async_sessionmaker[AsyncSession]
    verifier: TokenVerifier
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start_background(self, name: str, loop: Coroutine[Any, Any, None]) -> None:
        """Run ``loop`` until shutdown; if it dies, the error is logged loudly."""
        task = asyncio.create_task(loop, name=f"{self.service}:{name}")
        task.add_done_callback(_report_background_death)
        self.tasks.append(task)

    def start_outbox_relay(self) -> OutboxRelay:
        relay = OutboxRelay(
            service=self.service,
            database_url=self.settings.database_url.get_secret_value(),
            settings=self.platform,
        )
        self.start_background("outbox-relay", relay.run())
        return relay


def _report_background_death(task: asyncio.Task[None]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error("background_task_died", task=task.get_name(), error=repr(exc))


async def broker_reachable(platform: PlatformSettings) -> None:
    """Readiness: a TCP connection to the first bootstrap server opens within a second."""
    host, _, port = platform.kafka_bootstrap_servers.split(",")[0].rpartition(":")
    _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 1.0)
    writer.close()
    await writer.wait_closed()


@asynccontextmanager
async def service_runtime(
    app: FastAPI,
    *,
    service: str,
    settings: ServiceSettings,
    platform: PlatformSettings,
    verifier: TokenVerifier | None = None,
) -> AsyncIterator[ServiceRuntime]:
    engine = create_engine(settings.database_url.get_secret_value(), settings.database_pool_size)
    if verifier is None:
        verifier = TokenVerifier(
            JwksCache(platform.jwks_url),
            issuer=platform.auth_issuer,
            audience=platform.auth_audience,
        )
    runtime = ServiceRuntime(
        service=service,
        settings=settings,
        platform=platform,
        engine=engine,
        sessions=create_session_factory(engine),
        read_sessions=create_read_session_factory(engine),
        verifier=verifier,
    )
    app.state.runtime = runtime
    app.state.sessions = runtime.sessions
    app.state.read_sessions = runtime.read_sessions
    app.state.verifier = runtime.verifier

    async def database() -> None:
        await ping(engine)

    async def broker() -> None:
        await broker_reachable(platform)

    app.state.readiness_checks.extend([database, broker])
    try:
        yield runtime
    finally:
        for task in reversed(runtime.tasks):
            task.cancel()
        if runtime.tasks:
            await asyncio.gather(*runtime.tasks, return_exceptions=True)
        await runtime.verifier.jwks.close()
        await engine.dispose()
