"""What the gateway learns from the auth service directly (not through itself).

* The signing keys: :class:`UpstreamJwksCache` fetches ``/api/auth/jwks.json`` from a
  healthy auth replica, whichever is up when a refresh is needed.
* Revocations: :class:`RevocationFeed` polls auth's internal feed
  ``GET /internal/revocations?after=<seq>`` →
  ``{"items": [{"jti", "expires_at", "seq"}], "cursor": <seq>}`` every
  ``revocation_poll_interval_seconds`` into a :class:`~bazaar.kit.tokens.RevocationList`,
  so a revoked token is refused within about that long. Auth answers the feed only to a
  service: the gateway asks with its own client-credentials token, fetched from the same
  replica and renewed once when refused.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from bazaar.gateway.balancer import Balancer
from bazaar.kit.errors import ServiceUnavailable
from bazaar.kit.gateway_client import ClientCredentials
from bazaar.kit.logging import get_logger
from bazaar.kit.tokens import JwksCache, RevocationList

log = get_logger(__name__)

JWKS_PATH = "/api/auth/jwks.json"
REVOCATIONS_PATH = "/internal/revocations"
# A feed that keeps returning full pages is drained in one poll, up to this many pages.
MAX_PAGES_PER_POLL = 100
PRUNE_EVERY_SECONDS = 60.0


class UpstreamJwksCache(JwksCache):
    """A JWKS cache that asks a healthy replica of the auth pool, not a fixed URL."""

    def __init__(
        self, balancer: Balancer, auth_pool: str, *, min_refresh_interval: float = 1.0
    ) -> None:
        super().__init__("", min_refresh_interval=min_refresh_interval)
        self._balancer = balancer
        self._auth_pool = auth_pool

    async def _fetch(self) -> None:
        replica = self._balancer.pick(self._auth_pool)
        if replica is None:
            return
        await self._fetch_jwks(replica.url + JWKS_PATH)


class RevocationFeed:
    """Keeps a :class:`RevocationList` in step with the auth service's revocation feed."""

    def __init__(
        self,
        revocations: RevocationList,
        balancer: Balancer,
        auth_pool: str,
        *,
        interval: float,
        credentials: ClientCredentials | None,
    ) -> None:
        self.revocations = revocations
        self._balancer = balancer
        self._auth_pool = auth_pool
        self._interval = interval
        self._credentials = credentials
        self.synced_at: float | None = None
        self._failing = False

    async def run(self, http: aiohttp.ClientSession) -> None:
        if self._credentials is None:
            log.error(
                "revocation_feed_without_credentials",
                detail="BAZAAR_GATEWAY_CLIENT_ID/_SECRET are not set: auth will refuse the "
                "feed, and revoked tokens stay usable until they expire",
            )
        last_prune = time.monotonic()
        while True:
            await self.poll(http)
            if time.monotonic() - last_prune > PRUNE_EVERY_SECONDS:
                self.revocations.prune()
                last_prune = time.monotonic()
            await asyncio.sleep(self._interval)

    async def poll(self, http: aiohttp.ClientSession) -> None:
        """Fetch every revocation after the cursor; a failure is logged once per outage."""
        replica = self._balancer.pick(self._auth_pool)
        if replica is None:
            return
        timeout = aiohttp.ClientTimeout(total=max(self._interval * 2, 1.0))
        try:
            renew = renewed = False
            for _ in range(MAX_PAGES_PER_POLL):
                url = f"{replica.url}{REVOCATIONS_PATH}"
                params = {"after": str(self.revocations.cursor)}
                headers = await self._headers(http, replica.url, renew=renew)
                renew = False
                async with http.get(
                    url, params=params, headers=headers, timeout=timeout
                ) as response:
                    if response.status == 401 and self._credentials and not renewed:
                        # A rotated key or a revoked token: a new one, once a poll.
                        renew = renewed = True
                        continue
                    response.raise_for_status()
                    page: Any = await response.json(content_type=None)
                items = page.get("items") or []
                for item in items:
                    self.revocations.add(str(item["jti"]), int(item["expires_at"]))
                cursor = page.get("cursor")
                if isinstance(cursor, int) and cursor > self.revocations.cursor:
                    self.revocations.cursor = cursor
                elif items:
                    self.revocations.cursor = max(int(item["seq"]) for item in items)
                if not items:
                    break
        except (
            aiohttp.ClientError,
            ServiceUnavailable,
            TimeoutError,
            ValueError,
            KeyError,
            TypeError,
        ) as exc:
            if not self._failing:
                log.warning("revocation_feed_failed", replica=replica.url, error=repr(exc))
                self._failing = True
            return
        if self._failing:
            log.info("revocation_feed_restored", replica=replica.url)
            self._failing = False
        self.synced_at = time.monotonic()

    async def _headers(
        self, http: aiohttp.ClientSession, base_url: str, *, renew: bool
    ) -> dict[str, str]:
        if self._credentials is None:
            return {}
        token = await self._credentials.token(http, base_url, renew=renew)
        return {"Authorization": f"Bearer {token}"}
