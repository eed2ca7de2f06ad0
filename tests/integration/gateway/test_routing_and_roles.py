"""The route table at work: who gets through to which service (401 / 403 / 200)."""

from __future__ import annotations

import aiohttp
import pytest
from yarl import URL

from tests.integration.gateway.conftest import (
    GatewayUnderTest,
    Keys,
    StartGateway,
    StartUpstream,
    bearer,
)
from tests.integration.gateway.standins import AuthStandIn, EchoUpstream, RunningServer

ANONYMOUS = "anonymous"
CALLERS = {
    ANONYMOUS: None,
    "customer": ["customer"],
    "seller": ["customer", "seller"],
    "support": ["customer", "support"],
    "admin": ["customer", "admin"],
    "service": ["service"],
}
EVERYONE = set(CALLERS)
USERS = EVERYONE - {ANONYMOUS}

# (method, path, callers let through); everyone else gets 401 (anonymous) or 403.
MATRIX: list[tuple[str, str, set[str]]] = [
    ("POST", "/api/auth/register", EVERYONE),
    ("POST", "/api/auth/token", EVERYONE),
    ("POST", "/api/auth/introspect", EVERYONE),
    ("POST", "/api/auth/revoke", EVERYONE),
    ("GET", "/api/auth/jwks.json", EVERYONE),
    ("GET", "/api/auth/me", USERS),
    ("GET", "/api/auth/users?email=a%40b.c", {"support", "admin"}),
    ("PUT", "/api/auth/users/7d1e/roles", {"admin"}),
    ("GET", "/api/catalog/items?q=lamp&kind=good", EVERYONE),
    ("GET", "/api/catalog/items/3f2a", EVERYONE),
    ("HEAD", "/api/catalog/items/3f2a", EVERYONE),
    ("POST", "/api/catalog/items", {"seller", "admin"}),
    ("PATCH", "/api/catalog/items/3f2a", {"seller", "admin"}),
    ("POST", "/api/orders", {"customer", "seller", "support", "admin"}),
    ("GET", "/api/orders", {"customer", "seller", "support", "admin"}),
    ("GET", "/api/orders/sales", {"seller"}),
    ("GET", "/api/orders/9c1b", {"customer", "seller", "support", "admin", "service"}),
    ("POST", "/api/orders/9c1b/cancel", {"customer", "seller", "support", "admin", "service"}),
    ("POST", "/api/payments/methods", USERS),
    ("GET", "/api/payments/methods", USERS),
    ("DELETE", "/api/payments/methods/aa11", USERS),
    ("POST", "/api/payments", {"service", "admin"}),
    ("GET", "/api/payments", USERS),
    ("GET", "/api/payments/bb22", USERS),
    ("POST", "/api/payments/bb22/cancel", {"service", "support", "admin"}),
    ("POST", "/api/auctions", {"seller"}),
    ("GET", "/api/auctions?status=open", EVERYONE),
    ("GET", "/api/auctions/cc33", EVERYONE),
    ("GET", "/api/auctions/cc33/bids", EVERYONE),
    ("POST", "/api/auctions/cc33/bids", {"customer", "seller", "support", "admin"}),
    ("POST", "/api/auctions/cc33/buy-now", {"customer", "seller", "support", "admin"}),
    ("POST", "/api/auctions/cc33/cancel", {"seller", "support", "admin", "service"}),
    ("GET", "/api/support/operations?user_id=1", {"support", "admin"}),
    ("GET", "/api/support/timeline?entity_id=1", {"support", "admin"}),
    ("GET", "/api/support/problems", {"support", "admin"}),
    ("POST", "/api/support/actions", {"support", "admin"}),
    ("GET", "/api/support/actions/dd44", {"support", "admin"}),
]


@pytest.mark.parametrize(
    ("method", "path", "allowed"), MATRIX, ids=[f"{m} {p}" for m, p, _ in MATRIX]
)
async def test_route_lets_through_exactly_its_roles(
    echo_everywhere: tuple[GatewayUnderTest, EchoUpstream],
    keys: Keys,
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    allowed: set[str],
) -> None:
    gateway, _ = echo_everywhere
    for caller, roles in CALLERS.items():
        headers = {} if roles is None else bearer(keys.current.token(roles))
        url = URL(gateway.api(path), encoded=True)  # sent byte for byte
        async with http.request(method, url, headers=headers) as response:
            if caller in allowed:
                expected = 200
            elif caller == ANONYMOUS:
                expected = 401
            else:
                expected = 403
            assert response.status == expected, f"{caller} {method} {path}: {response.status}"
            if expected == 200 and method != "HEAD" and not path.endswith("jwks.json"):
                echoed = await response.json()
                # Forwarded unchanged: the full public path and its query.
                assert echoed["path_qs"] == path
                assert echoed["method"] == method
            elif expected != 200:
                assert response.content_type == "application/problem+json"
                problem = await response.json()
                assert problem["status"] == expected
                assert problem["code"] == ("invalid_token" if expected == 401 else "forbidden")
                if expected == 401:
                    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


async def test_unknown_api_path_is_a_404_problem(
    echo_everywhere: tuple[GatewayUnderTest, EchoUpstream], http: aiohttp.ClientSession
) -> None:
    gateway, upstream = echo_everywhere
    for path in ("/api/nothing/here", "/api", "/api/catalogue/items"):
        async with http.get(gateway.api(path)) as response:
            assert response.status == 404, path
            assert response.content_type == "application/problem+json"
            assert (await response.json())["code"] == "not_found"
    assert upstream.requests == 0


async def test_dot_segments_are_refused_before_routing(
    echo_everywhere: tuple[GatewayUnderTest, EchoUpstream], http: aiohttp.ClientSession
) -> None:
    gateway, upstream = echo_everywhere
    for raw in ("/api/catalog/../support/problems", "/api/catalog/%2e%2e/support/problems"):
        url = URL(gateway.api(raw), encoded=True)
        async with http.get(url) as response:
            assert response.status == 400, raw
            assert (await response.json())["code"] == "bad_path"
    assert upstream.requests == 0


async def test_requests_reach_the_pool_of_their_prefix(
    keys: Keys,
    start_upstream: StartUpstream,
    start_gateway: StartGateway,
    auth: tuple[AuthStandIn, RunningServer],
    http: aiohttp.ClientSession,
) -> None:
    _catalog, catalog_server = await start_upstream("catalog")
    _orders, orders_server = await start_upstream("orders")
    gateway = await start_gateway(
        {"auth": [auth[1].url], "catalog": [catalog_server.url], "orders": [orders_server.url]}
    )
    token = keys.current.token(["customer"])
    async with http.get(gateway.api("/api/catalog/items")) as response:
        assert (await response.json())["upstream"] == "catalog"
    async with http.get(gateway.api("/api/orders"), headers=bearer(token)) as response:
        assert (await response.json())["upstream"] == "orders"
    async with http.get(gateway.api("/api/auth/me"), headers=bearer(token)) as response:
        assert (await response.json())["upstream"] == "auth"
