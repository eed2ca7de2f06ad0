"""What a running gateway holds: the table, the pools, the verifier, the clients, the loops.

Built by :func:`bazaar.gateway.app.create_app` without touching the network; the
client sessions and the background loops (health checks, revocation feed) start in
:meth:`Gateway.start` on the serving event loop and stop in :meth:`Gateway.close`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

import aiohttp

from bazaar.gateway.balancer import Balancer
from bazaar.gateway.identity import RevocationFeed, UpstreamJwksCache
from bazaar.gateway.metrics import GatewayMetrics
from bazaar.gateway.openapi import OpenApiCatalog
from bazaar.gateway.proxy import Forwarder
from bazaar.gateway.ratelimit import RateLimiter, create_rate_limiter
from bazaar.gateway.routing import RouteTable, load_route_table
from bazaar.gateway.settings import GatewaySettings
from bazaar.gateway.upstream import UpstreamClient
from bazaar.kit.config import PlatformSettings
from bazaar.kit.gateway_client import ClientCredentials
from bazaar.kit.logging import get_logger
from bazaar.kit.tokens import RevocationList, TokenVerifier

log = get_logger(__name__)


class Gateway:
    def __init__(self, settings: GatewaySettings, platform: PlatformSettings) -> None:
        self.settings = settings
        self.platform = platform
        self.routes: RouteTable = load_route_table(settings.routes_file)
        self.metrics = GatewayMetrics()
        self.balancer = Balancer(
            settings.upstreams,
            settings=settings,
            metrics=self.metrics,
            pool_names=[*self.routes.pools, settings.auth_pool],
        )
        self.revocations = RevocationList()
        self.jwks = UpstreamJwksCache(
            self.balancer,
            settings.auth_pool,
            min_refresh_interval=settings.jwks_min_refresh_seconds,
        )
        self.verifier = TokenVerifier(
            self.jwks,
            issuer=platform.auth_issuer,
            audience=platform.auth_audience,
            revocations=self.revocations,
            cache_size=settings.token_cache_size,
        )
        self.revocation_feed = RevocationFeed(
            self.revocations,
            self.balancer,
            settings.auth_pool,
            interval=settings.revocation_poll_interval_seconds,
            credentials=ClientCredentials(
                settings.client_id, settings.client_secret.get_secret_value()
            )
            if settings.client_id
            else None,
        )
        self.openapi = OpenApiCatalog(
            self.routes, self.balancer, ttl=settings.openapi_cache_ttl_seconds
        )
        self.limiter: RateLimiter = create_rate_limiter(settings, platform.redis_url)
        self._upstream: UpstreamClient | None = None
        self._control_http: aiohttp.ClientSession | None = None
        self._forwarder: Forwarder | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def forwarder(self) -> Forwarder:
        assert self._forwarder is not None, "the gateway is not started"
        return self._forwarder

    @property
    def control_http(self) -> aiohttp.ClientSession:
        """The client for the gateway's own calls (health checks, keys, feeds, OpenAPI)."""
        assert self._control_http is not None, "the gateway is not started"
        return self._control_http

    async def start(self) -> None:
        settings = self.settings
        self._upstream = UpstreamClient(
            connect_timeout=settings.connect_timeout_seconds,
            keepalive_seconds=settings.upstream_keepalive_seconds,
            limit=settings.upstream_connection_limit,
        )
        self._control_http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=100, keepalive_timeout=4.0),
            timeout=aiohttp.ClientTimeout(total=10.0, sock_connect=2.0),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self._forwarder = Forwarder(settings, self.balancer, self.metrics, self._upstream)
        self._start_background("health-checks", self.balancer.run_health_checks(self.control_http))
        self._start_background("revocation-feed", self.revocation_feed.run(self.control_http))
        self._start_background("jwks-prefetch", self.jwks.refresh())
        log.info(
            "gateway_started",
            pools={name: len(pool.replicas) for name, pool in self.balancer.pools.items()},
        )

    async def close(self) -> None:
        for task in reversed(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.limiter.close()
        await self.jwks.close()
        if self._upstream is not None:
            await self._upstream.close()
        if self._control_http is not None:
            await self._control_http.close()

    def _start_background(self, name: str, loop: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(loop, name=f"gateway:{name}")
        task.add_done_callback(_report_death)
        self._tasks.append(task)


def _report_death(task: asyncio.Task[None]) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        error = task.exception()
        if error is not None:
            log.error("background_task_died", task=task.get_name(), error=repr(error))
