"""Upstream pools: the replicas of each service, which of them are healthy, which to use.

Picking is least-outstanding-requests, scanning from a rotating start so that idle
replicas take turns (round-robin when load is light). A replica is ejected after
``unhealthy_after_failures`` consecutive failed health checks, or at once when a
connection to it cannot be opened while proxying; the health checker brings it back
after ``healthy_after_successes`` good checks of its ``/healthz``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import aiohttp

from bazaar.gateway.metrics import GatewayMetrics
from bazaar.gateway.settings import GatewaySettings
from bazaar.kit.logging import get_logger

log = get_logger(__name__)


@dataclass(eq=False, slots=True)
class Replica:
    pool: str
    url: str  # base URL, no trailing slash
    healthy: bool = True
    outstanding: int = 0
    failures: int = 0  # consecutive
    successes: int = 0  # consecutive, while ejected

    def as_dict(self) -> dict[str, object]:
        return {"url": self.url, "healthy": self.healthy, "outstanding": self.outstanding}


class UpstreamPool:
    def __init__(self, name: str, urls: Iterable[str]) -> None:
        self.name = name
        self.replicas = [Replica(name, url.rstrip("/")) for url in urls]
        self._next = 0

    def pick(self, exclude: tuple[Replica, ...] = ()) -> Replica | None:
        """A healthy replica not in ``exclude`` with the fewest requests in flight.

        When every replica left is marked unhealthy, one of them is tried anyway ("panic
        mode", as Envoy calls it): health checks that time out on a saturated machine must
        not turn a slow service into a refused one. A replica that is really down then
        fails fast at connect, and the request moves on or ends in 503.
        """
        replicas = self.replicas
        count = len(replicas)
        if count == 0:
            return None
        start = self._next
        self._next = start + 1 if start + 1 < count else 0
        best: Replica | None = None
        fallback: Replica | None = None
        for offset in range(count):
            index = start + offset
            replica = replicas[index if index < count else index - count]
            if replica in exclude:
                continue
            if not replica.healthy:
                if fallback is None or replica.outstanding < fallback.outstanding:
                    fallback = replica
                continue
            if best is None or replica.outstanding < best.outstanding:
                best = replica
        return best or fallback

    def healthy_replicas(self) -> list[Replica]:
        return [replica for replica in self.replicas if replica.healthy]


class Balancer:
    """Every pool, and the rules that eject and restore replicas."""

    def __init__(
        self,
        upstreams: Mapping[str, Iterable[str]],
        *,
        settings: GatewaySettings,
        metrics: GatewayMetrics,
        pool_names: Iterable[str] = (),
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.pools: dict[str, UpstreamPool] = {
            name: UpstreamPool(name, urls) for name, urls in upstreams.items()
        }
        for name in pool_names:
            self.pools.setdefault(name, UpstreamPool(name, ()))
        for pool in self.pools.values():
            for replica in pool.replicas:
                metrics.set_replica_health(pool.name, replica.url, True)
        self.check_rounds = 0

    def pool(self, name: str) -> UpstreamPool:
        pool = self.pools.get(name)
        if pool is None:
            pool = self.pools[name] = UpstreamPool(name, ())
        return pool

    def pick(self, pool: str, exclude: tuple[Replica, ...] = ()) -> Replica | None:
        return self.pool(pool).pick(exclude)

    # --- outcomes ---------------------------------------------------------------------

    def connection_refused(self, replica: Replica, error: BaseException) -> None:
        """A connection could not be opened: the replica is down, eject it now."""
        replica.failures = max(replica.failures + 1, self.settings.unhealthy_after_failures)
        replica.successes = 0
        if replica.healthy:
            self._eject(replica, f"connect failed: {error!r}")

    def request_failed(self, replica: Replica, error: BaseException) -> None:
        """A connection broke mid-exchange (maybe a stale keep-alive): one strike."""
        replica.failures += 1
        replica.successes = 0
        if replica.healthy and replica.failures >= self.settings.unhealthy_after_failures:
            self._eject(replica, f"{replica.failures} failures, last: {error!r}")

    def check_passed(self, replica: Replica) -> None:
        replica.failures = 0
        if replica.healthy:
            return
        replica.successes += 1
        if replica.successes >= self.settings.healthy_after_successes:
            replica.healthy = True
            replica.successes = 0
            self.metrics.set_replica_health(replica.pool, replica.url, True)
            log.info("replica_restored", pool=replica.pool, replica=replica.url)

    def check_failed(self, replica: Replica, reason: str) -> None:
        replica.successes = 0
        replica.failures += 1
        if replica.healthy and replica.failures >= self.settings.unhealthy_after_failures:
            self._eject(replica, reason)

    def _eject(self, replica: Replica, reason: str) -> None:
        replica.healthy = False
        self.metrics.set_replica_health(replica.pool, replica.url, False)
        log.warning("replica_ejected", pool=replica.pool, replica=replica.url, reason=reason)

    # --- active health checks ---------------------------------------------------------

    async def run_health_checks(self, http: aiohttp.ClientSession) -> None:
        """Check every replica's ``/healthz`` each interval, until cancelled."""
        interval = self.settings.health_check_interval_seconds
        while True:
            await self.check_all(http)
            await asyncio.sleep(interval)

    async def check_all(self, http: aiohttp.ClientSession) -> None:
        replicas = [replica for pool in self.pools.values() for replica in pool.replicas]
        if replicas:
            await asyncio.gather(*(self._check(http, replica) for replica in replicas))
        self.check_rounds += 1

    async def _check(self, http: aiohttp.ClientSession, replica: Replica) -> None:
        timeout = aiohttp.ClientTimeout(total=self.settings.health_check_timeout_seconds)
        try:
            async with http.get(f"{replica.url}/healthz", timeout=timeout) as response:
                await response.read()
                ok = 200 <= response.status < 300
                reason = f"/healthz answered {response.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            ok = False
            reason = f"/healthz failed: {exc!r}"
        if ok:
            self.check_passed(replica)
        else:
            self.check_failed(replica, reason)
