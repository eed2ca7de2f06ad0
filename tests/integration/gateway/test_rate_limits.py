"""Rate limits per user and per address: 429 with Retry-After, in memory and via Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
import redis.asyncio as aioredis

from tests.integration.gateway.conftest import (
    GatewayUnderTest,
    Keys,
    StartGateway,
    StartUpstream,
    bearer,
)
from tests.integration.gateway.standins import AuthStandIn, RunningServer

REDIS_URL = "redis://127.0.0.1:6379/0"


async def _statuses(
    http: aiohttp.ClientSession, gateway: GatewayUnderTest, count: int, headers: dict[str, str]
) -> list[tuple[int, str | None]]:
    results = []
    for _ in range(count):
        async with http.get(gateway.api("/api/catalog/items"), headers=headers) as response:
            results.append((response.status, response.headers.get("Retry-After")))
            if response.status == 429:
                assert response.content_type == "application/problem+json"
                assert (await response.json())["code"] == "rate_limited"
    return results


async def _pools(
    auth: tuple[AuthStandIn, RunningServer], start_upstream: StartUpstream
) -> dict[str, list[str]]:
    _, catalog = await start_upstream("catalog")
    return {"auth": [auth[1].url], "catalog": [catalog.url]}


async def test_a_user_over_the_limit_gets_429_with_retry_after(
    auth: tuple[AuthStandIn, RunningServer],
    start_upstream: StartUpstream,
    start_gateway: StartGateway,
    keys: Keys,
    http: aiohttp.ClientSession,
) -> None:
    gateway = await start_gateway(
        await _pools(auth, start_upstream),
        rate_limit_user_per_second=0.5,
        rate_limit_user_burst=3,
    )
    alice = bearer(keys.current.token(["customer"]))
    results = await _statuses(http, gateway, 4, alice)
    assert [status for status, _ in results] == [200, 200, 200, 429]
    assert int(results[-1][1] or 0) >= 1
    # Another user from the same address is not affected.
    bob = bearer(keys.current.token(["customer"]))
    assert (await _statuses(http, gateway, 1, bob))[0][0] == 200


async def test_an_address_over_the_limit_gets_429(
    auth: tuple[AuthStandIn, RunningServer],
    start_upstream: StartUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    gateway = await start_gateway(
        await _pools(auth, start_upstream),
        rate_limit_address_per_second=0.5,
        rate_limit_address_burst=2,
    )
    results = await _statuses(http, gateway, 3, {})
    assert [status for status, _ in results] == [200, 200, 429]
    assert results[-1][1] is not None


async def test_limits_can_be_switched_off(
    auth: tuple[AuthStandIn, RunningServer],
    start_upstream: StartUpstream,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
) -> None:
    gateway = await start_gateway(
        await _pools(auth, start_upstream),
        rate_limit_enabled=False,
        rate_limit_address_per_second=0.5,
        rate_limit_address_burst=1,
    )
    assert {status for status, _ in await _statuses(http, gateway, 5, {})} == {200}


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    prefix = f"bazaar:test:{uuid.uuid4().hex[:8]}:"
    yield prefix
    client = aioredis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def test_gateways_sharing_redis_share_the_limit(
    auth: tuple[AuthStandIn, RunningServer],
    start_upstream: StartUpstream,
    start_gateway: StartGateway,
    keys: Keys,
    http: aiohttp.ClientSession,
    redis_prefix: str,
) -> None:
    pools = await _pools(auth, start_upstream)
    limits = {
        "rate_limit_user_per_second": 0.05,  # 3 requests per 60 s window
        "rate_limit_window_seconds": 60,
        "rate_limit_redis_prefix": redis_prefix,
    }
    first = await start_gateway(pools, redis_url=REDIS_URL, **limits)
    second = await start_gateway(pools, redis_url=REDIS_URL, **limits)
    alice = bearer(keys.current.token(["customer"]))
    statuses = [status for status, _ in await _statuses(http, first, 2, alice)]
    statuses += [status for status, _ in await _statuses(http, second, 1, alice)]
    assert statuses == [200, 200, 200]
    refused = await _statuses(http, second, 1, alice)
    assert refused[0][0] == 429
    assert 1 <= int(refused[0][1] or 0) <= 60
    assert (await _statuses(http, first, 1, alice))[0][0] == 429
