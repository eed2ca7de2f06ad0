"""Renewing tokens: once per refresh token, however many requests need it at once."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable

import orjson
import pytest

from bazaar.kit.testing import wait_for
from bazaar.portal.client import ApiError, TokenPair, TokenRefresher, token_pair
from bazaar.portal.problems import Problem


def pair(name: str) -> TokenPair:
    return TokenPair(name, name + "-refresh", time.time() + 900, "user", ["customer"])


class Callers:
    """Requests renewing through one refresher, counted as they ask: a renewal runs
    without pausing up to where it waits for the exchange, so once ``entered`` reaches n,
    n requests are waiting on it."""

    def __init__(
        self, refresher: TokenRefresher, exchange: Callable[[str], Awaitable[TokenPair]]
    ) -> None:
        self._refresher = refresher
        self._exchange = exchange
        self.entered = 0

    async def refresh(self, token: str) -> TokenPair:
        self.entered += 1
        return await self._refresher.refresh(token, self._exchange)


async def test_concurrent_renewals_spend_the_refresh_token_once() -> None:
    refresher = TokenRefresher(grace_seconds=30)
    calls: list[str] = []
    release = asyncio.Event()

    async def exchange(token: str) -> TokenPair:
        calls.append(token)
        await release.wait()
        return pair("new")

    asking = Callers(refresher, exchange)
    waiting = [asyncio.create_task(asking.refresh("old")) for _ in range(5)]
    await wait_for(lambda: asking.entered == 5, timeout=5, message="five renewals under way")
    release.set()
    results = await asyncio.gather(*waiting)
    assert calls == ["old"]
    assert {result.access_token for result in results} == {"new"}
    # A request that started with the old cookie a moment later gets the same pair.
    assert (await refresher.refresh("old", exchange)).access_token == "new"
    assert calls == ["old"]


async def test_after_the_grace_period_the_old_token_is_asked_for_again() -> None:
    now = [100.0]
    refresher = TokenRefresher(grace_seconds=5, clock=lambda: now[0])
    calls: list[str] = []

    async def exchange(token: str) -> TokenPair:
        calls.append(token)
        return pair(f"new-{len(calls)}")

    await refresher.refresh("old", exchange)
    now[0] += 5
    await refresher.refresh("old", exchange)
    assert calls == ["old"]  # still within the grace period
    now[0] += 0.001
    await refresher.refresh("old", exchange)
    assert calls == ["old", "old"]


async def test_a_refused_renewal_reaches_every_waiter_and_is_not_remembered() -> None:
    refresher = TokenRefresher(grace_seconds=30)
    refused = ApiError(Problem.of(400, "invalid_grant", "spent"))
    release = asyncio.Event()

    async def exchange(token: str) -> TokenPair:
        await release.wait()
        raise refused

    asking = Callers(refresher, exchange)
    waiting = asyncio.gather(*(asking.refresh("old") for _ in range(3)), return_exceptions=True)
    await wait_for(lambda: asking.entered == 3, timeout=5, message="three renewals under way")
    release.set()
    results = await waiting
    assert all(result is refused for result in results)
    with pytest.raises(ApiError):
        await refresher.refresh("old", exchange)


def test_a_token_response_is_read_with_its_expiry_and_roles() -> None:
    claims = {"sub": "u1", "exp": 2_000_000_000, "roles": ["customer", "seller"]}
    payload = base64.urlsafe_b64encode(orjson.dumps(claims)).decode().rstrip("=")
    read = token_pair(
        {"access_token": f"h.{payload}.s", "refresh_token": "r", "expires_in": 900}, now=0
    )
    assert (read.subject, read.expires_at, read.roles) == ("u1", 2_000_000_000, claims["roles"])
    opaque = token_pair({"access_token": "opaque", "refresh_token": "r", "expires_in": 60}, now=10)
    assert opaque.expires_at == 70
