"""Fixtures for the gateway's integration tests: keys, stand-in services, gateways.

Everything is a real server on a loopback port: the auth stand-in (keys and the
revocation feed), echo replicas for the services, and the gateway itself built by
``create_app`` and served by aiohttp, as ``serve`` does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from bazaar.gateway.api import GATEWAY
from bazaar.gateway.app import create_app
from bazaar.gateway.runtime import Gateway
from bazaar.gateway.settings import GatewaySettings
from bazaar.kit.config import PlatformSettings
from bazaar.kit.testing import wait_for
from tests.integration.gateway.standins import (
    AUDIENCE,
    GATEWAY_CLIENT,
    ISSUER,
    AuthStandIn,
    EchoUpstream,
    RunningServer,
    SigningKey,
)

SERVICES = ("auth", "catalog", "orders", "payments", "auctions", "support", "portal")


@dataclass
class GatewayUnderTest:
    url: str
    gateway: Gateway
    server: RunningServer

    def api(self, path: str) -> str:
        return self.url + path


@dataclass
class Keys:
    current: SigningKey
    next: SigningKey  # published only when a test rotates to it
    rogue: SigningKey  # never published


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys(
        current=SigningKey.generate("key-1"),
        next=SigningKey.generate("key-2"),
        rogue=SigningKey.generate("key-rogue"),
    )


@pytest.fixture
async def servers() -> AsyncIterator[list[RunningServer]]:
    """Servers a test started; all stopped at its end."""
    started: list[RunningServer] = []
    yield started
    for server in reversed(started):
        await server.stop()


StartUpstream = Callable[[str], Awaitable[tuple[EchoUpstream, RunningServer]]]


@pytest.fixture
def start_upstream(servers: list[RunningServer]) -> StartUpstream:
    async def start(name: str) -> tuple[EchoUpstream, RunningServer]:
        upstream = EchoUpstream(name)
        server = await RunningServer(upstream.app).start()
        servers.append(server)
        return upstream, server

    return start


@pytest.fixture
async def auth(keys: Keys, servers: list[RunningServer]) -> tuple[AuthStandIn, RunningServer]:
    standin = AuthStandIn([keys.current])
    server = await RunningServer(standin.app).start()
    servers.append(server)
    return standin, server


def platform_settings(redis_url: str | None = None) -> PlatformSettings:
    return PlatformSettings(
        auth_issuer=ISSUER, auth_audience=AUDIENCE, redis_url=redis_url, log_format="console"
    )


StartGateway = Callable[..., Awaitable[GatewayUnderTest]]


@pytest.fixture
def start_gateway(servers: list[RunningServer]) -> StartGateway:
    """Start a gateway: ``await start_gateway({"catalog": [url]}, try_timeout_seconds=1)``."""

    async def start(
        upstreams: dict[str, list[str]], *, redis_url: str | None = None, **overrides: Any
    ) -> GatewayUnderTest:
        values: dict[str, Any] = {
            "health_check_interval_seconds": 0.2,
            "health_check_timeout_seconds": 0.5,
            "client_id": GATEWAY_CLIENT[0],
            "client_secret": GATEWAY_CLIENT[1],
        }
        values.update(overrides)
        settings = GatewaySettings(upstreams=upstreams, **values)
        app = create_app(settings, platform_settings(redis_url))
        server = await RunningServer(app).start()
        servers.append(server)
        gateway = app[GATEWAY]
        # Ready means: every replica checked once, so the pools say what is up.
        await wait_for(lambda: gateway.balancer.check_rounds > 0, message="first health check")
        return GatewayUnderTest(server.url, gateway, server)

    return start


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


@pytest.fixture
async def echo_everywhere(
    auth: tuple[AuthStandIn, RunningServer],
    start_upstream: StartUpstream,
    start_gateway: StartGateway,
) -> tuple[GatewayUnderTest, EchoUpstream]:
    """A gateway whose every service pool is one echo replica (auth: the stand-in)."""
    upstream, server = await start_upstream("echo")
    upstreams = {name: [server.url] for name in SERVICES if name != "auth"}
    upstreams["auth"] = [auth[1].url]
    gateway = await start_gateway(upstreams)
    return gateway, upstream


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
