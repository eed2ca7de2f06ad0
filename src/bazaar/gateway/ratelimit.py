"""Rate limits per user (the token's ``sub``) and per client address.

In memory by default: a token bucket per key, refilled at ``per_second`` up to
``burst``. When several gateway replicas must share the count, ``BAZAAR_REDIS_URL``
switches to Redis: a fixed window per key that starts with its first request,
counted by one Lua script call (one round trip for both keys). If Redis is
unreachable the gateway lets requests through rather than fail them all.
"""

from __future__ import annotations

import math
import time
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from bazaar.gateway.settings import GatewaySettings
from bazaar.kit.errors import RateLimited
from bazaar.kit.logging import get_logger

log = get_logger(__name__)


class RateLimiter(Protocol):
    async def check(self, address: str, user: str | None) -> None:
        """Count one request; raise :class:`RateLimited` when either key is over its limit."""

    async def close(self) -> None: ...


class MemoryRateLimiter:
    """Token buckets in this process: ``[tokens, last refill]`` per key."""

    def __init__(self, settings: GatewaySettings, *, max_keys: int = 100_000) -> None:
        self._user_rate = settings.rate_limit_user_per_second
        self._user_burst = float(settings.rate_limit_user_burst)
        self._address_rate = settings.rate_limit_address_per_second
        self._address_burst = float(settings.rate_limit_address_burst)
        self._buckets: dict[str, list[float]] = {}
        self._max_keys = max_keys
        # After this long without a request, any bucket is full again: as good as new.
        self._refill_seconds = max(
            self._user_burst / max(self._user_rate, 1e-9),
            self._address_burst / max(self._address_rate, 1e-9),
        )

    async def check(self, address: str, user: str | None) -> None:
        now = time.monotonic()
        self._take("a:" + address, self._address_rate, self._address_burst, now)
        if user is not None:
            self._take("u:" + user, self._user_rate, self._user_burst, now)

    def _take(self, key: str, rate: float, burst: float, now: float) -> None:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                self._prune(now)
            self._buckets[key] = [burst - 1.0, now]
            return
        tokens = min(burst, bucket[0] + (now - bucket[1]) * rate)
        bucket[1] = now
        if tokens < 1.0:
            bucket[0] = tokens
            raise RateLimited(retry_after=math.ceil((1.0 - tokens) / rate) if rate > 0 else 60)
        bucket[0] = tokens - 1.0

    def _prune(self, now: float) -> None:
        """Forget buckets that have refilled anyway (they carry no information)."""
        self._buckets = {
            key: bucket
            for key, bucket in self._buckets.items()
            if now - bucket[1] < self._refill_seconds
        }
        if len(self._buckets) >= self._max_keys:
            self._buckets.clear()

    async def close(self) -> None:
        return None


# KEYS: the counters; ARGV[1]: window in ms; ARGV[2..]: the limit of each key.
# Returns, per key, its count and its remaining window in ms.
_FIXED_WINDOW = """
local result = {}
for index, key in ipairs(KEYS) do
  local count = redis.call('INCR', key)
  if count == 1 then
    redis.call('PEXPIRE', key, ARGV[1])
  end
  local ttl = redis.call('PTTL', key)
  if ttl < 0 then
    redis.call('PEXPIRE', key, ARGV[1])
    ttl = tonumber(ARGV[1])
  end
  result[#result + 1] = count
  result[#result + 1] = ttl
end
return result
"""


class RedisRateLimiter:
    """Fixed windows shared by every gateway replica through Redis."""

    def __init__(self, url: str, settings: GatewaySettings) -> None:
        self._redis = aioredis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._script = self._redis.register_script(_FIXED_WINDOW)
        self._prefix = settings.rate_limit_redis_prefix
        window = max(1, settings.rate_limit_window_seconds)
        self._window_ms = window * 1000
        self._user_limit = max(1, math.floor(settings.rate_limit_user_per_second * window))
        self._address_limit = max(1, math.floor(settings.rate_limit_address_per_second * window))
        self._failing = False

    async def check(self, address: str, user: str | None) -> None:
        keys = [f"{self._prefix}a:{address}"]
        limits = [self._address_limit]
        if user is not None:
            keys.append(f"{self._prefix}u:{user}")
            limits.append(self._user_limit)
        try:
            result = await self._script(keys=keys, args=[self._window_ms, *limits])
        except (RedisError, OSError) as exc:
            if not self._failing:
                log.warning("rate_limit_store_unreachable", error=repr(exc))
                self._failing = True
            return
        self._failing = False
        for index, limit in enumerate(limits):
            count, ttl_ms = int(result[2 * index]), int(result[2 * index + 1])
            if count > limit:
                raise RateLimited(retry_after=math.ceil(ttl_ms / 1000))

    async def close(self) -> None:
        await self._redis.aclose()


class NoRateLimit:
    async def check(self, address: str, user: str | None) -> None:
        return None

    async def close(self) -> None:
        return None


def create_rate_limiter(settings: GatewaySettings, redis_url: str | None) -> RateLimiter:
    if not settings.rate_limit_enabled:
        return NoRateLimit()
    if redis_url:
        return RedisRateLimiter(redis_url, settings)
    return MemoryRateLimiter(settings)
