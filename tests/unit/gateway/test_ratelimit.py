"""The in-memory token bucket."""

from __future__ import annotations

from typing import Any

import pytest

from bazaar.gateway.ratelimit import MemoryRateLimiter, NoRateLimit, create_rate_limiter
from bazaar.gateway.settings import GatewaySettings
from bazaar.kit.errors import RateLimited


def limiter(**values: Any) -> MemoryRateLimiter:
    return MemoryRateLimiter(GatewaySettings(**values))


async def test_a_burst_is_allowed_then_refused_with_a_retry_after() -> None:
    limits = limiter(rate_limit_user_per_second=0.25, rate_limit_user_burst=2)
    await limits.check("1.2.3.4", "alice")
    await limits.check("1.2.3.4", "alice")
    with pytest.raises(RateLimited) as refused:
        await limits.check("1.2.3.4", "alice")
    assert refused.value.headers() == {"Retry-After": "4"}
    await limits.check("1.2.3.4", "bob")  # another user's bucket


async def test_the_address_bucket_counts_anonymous_and_users_alike() -> None:
    limits = limiter(rate_limit_address_per_second=1, rate_limit_address_burst=2)
    await limits.check("1.2.3.4", None)
    await limits.check("1.2.3.4", "alice")
    with pytest.raises(RateLimited):
        await limits.check("1.2.3.4", "bob")
    await limits.check("5.6.7.8", None)


async def test_many_keys_are_pruned_not_kept_forever() -> None:
    limits = MemoryRateLimiter(GatewaySettings(), max_keys=10)
    for number in range(100):
        await limits.check(f"10.0.0.{number}", None)
    assert len(limits._buckets) <= 10


def test_the_limiter_follows_the_settings() -> None:
    disabled = create_rate_limiter(GatewaySettings(rate_limit_enabled=False), None)
    assert isinstance(disabled, NoRateLimit)
    assert isinstance(create_rate_limiter(GatewaySettings(), None), MemoryRateLimiter)
