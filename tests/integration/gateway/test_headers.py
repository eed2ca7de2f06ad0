"""What the gateway adds, passes on and strips: request ids, forwarding, hop-by-hop."""

from __future__ import annotations

import re
from typing import Any

import aiohttp

from tests.integration.gateway.conftest import GatewayUnderTest, Keys, bearer
from tests.integration.gateway.standins import EchoUpstream

GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")


async def test_a_sane_request_id_is_passed_on_and_echoed(
    echo_everywhere: tuple[GatewayUnderTest, EchoUpstream], http: aiohttp.ClientSession
) -> None:
    gateway, _ = echo_everywhere
    request_id = "checkout-7f3a:retry.2"
    async with http.get(
        gateway.api("/api/catalog/items"), headers={"X-Request-ID": request_id}
    ) as response:
        assert response.headers["X-Request-ID"] == request_id
        assert (await response.json())["headers"]["X-Request-ID"] == request_id


async def test_a_missing_or_odd_request_id_is_replaced_by_a_new_one(
    echo_everywhere: tuple[GatewayUnderTest, EchoUpstream], http: aiohttp.ClientSession
) -> None:
    gateway, _ = echo_everywhere
    seen = set()
    for headers in ({}, {"X-Request-ID": "has spaces"}, {"X-Request-ID": "x" * 129}):
        async with http.get(gateway.api("/api/catalog/items"), headers=headers) as response:
            request_id = response.headers["X-Request-ID"]
            assert GENERATED_ID.match(request_id)
            assert (await response.json())["headers"]["X-Request-ID"] == request_id
            seen.add(request_id)
    assert len(seen) == 3


async def test_every_answer_of_the_gateway_itself_carries_the_request_id(
    echo_everywhere: tuple[GatewayUnderTest, EchoUpstream],
    keys: Keys,
    http: aiohttp.ClientSession,
) -> None:
    gateway, _ = echo_everywhere
    cases = [
        ("GET", "/api/nowhere", {}),  # 404
        ("GET", "/api/auth/me", {}),  # 401
        ("POST", "/api/catalog/items", bearer(keys.current.token(["customer"]))),  # 403
        ("GET", "/api/health", {}),
        ("GET", "/api/docs", {}),
        ("GET", "/healthz", {}),
        ("GET", "/readyz", {}),
        ("GET", "/metrics", {}),
    ]
    for method, path, headers in cases:
        async with http.request(
            method, gateway.api(path), headers={**headers, "X-Request-ID": "req-1"}
        ) as response:
            assert response.headers.get("X-Request-ID") == "req-1", path


async def test_no_answer_names_the_software_behind_the_gateway(
    echo_everywhere: tuple[GatewayUnderTest, EchoUpstream], http: aiohttp.ClientSession
) -> None:
    gateway, _ = echo_everywhere
    for path in ("/api/catalog/items", "/api/nowhere", "/api/health", "/metrics"):
        async with http.get(gateway.api(path)) as response:
            assert response.headers.get("Server") == "bazaar", path


async def test_forwarding_headers_are_the_gateways_and_hop_by_hop_ones_stay_behind(
    echo_everywhere: tuple[GatewayUnderTest, EchoUpstream],
    keys: Keys,
    http: aiohttp.ClientSession,
) -> None:
    gateway, _ = echo_everywhere
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    sent = {
        "X-Forwarded-For": "6.6.6.6",  # a client may not choose its address
        "X-Forwarded-Proto": "https",
        "Forwarded": "for=6.6.6.6",
        "traceparent": traceparent,
        "Idempotency-Key": "k-1",
        "Connection": "keep-alive, X-Secret-Hop",
        "X-Secret-Hop": "do not forward",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "Proxy-Authorization": "Basic c2VjcmV0",
        **bearer(keys.current.token(["customer"])),
    }
    async with http.get(gateway.api("/api/auth/me"), headers=sent) as response:
        assert response.status == 200
        echoed = await response.json()
    headers = {name.lower(): value for name, value in echoed["headers"].items()}
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert "forwarded" not in headers
    assert headers["traceparent"] == traceparent
    assert headers["idempotency-key"] == "k-1"
    assert headers["authorization"] == sent["Authorization"]
    for hop in ("x-secret-hop", "keep-alive", "te", "proxy-authorization"):
        assert hop not in headers, hop
    assert echoed["header_names"].count("x-forwarded-for") == 1


async def test_response_headers_come_back_without_hop_by_hop_ones(
    echo_everywhere: tuple[GatewayUnderTest, EchoUpstream], http: aiohttp.ClientSession
) -> None:
    gateway, _ = echo_everywhere
    async with http.get(gateway.api("/api/catalog/items")) as response:
        assert response.content_type == "application/json"
        assert response.headers.get("Keep-Alive") is None
        assert response.headers.getall("X-Request-ID") == [response.headers["X-Request-ID"]]


async def test_a_trusted_proxy_keeps_its_clients_address_in_front(
    auth: tuple[Any, Any],
    start_upstream: Any,
    start_gateway: Any,
    http: aiohttp.ClientSession,
) -> None:
    """The portal calls the API for browsers: auth must see the browser's address."""
    _upstream, server = await start_upstream("echo")
    gateway = await start_gateway(
        {"catalog": [server.url], "auth": [auth[1].url]}, trusted_proxies=["127.0.0.0/8"]
    )
    async with http.get(
        gateway.api("/api/catalog/items"), headers={"X-Forwarded-For": "203.0.113.9"}
    ) as response:
        echoed = await response.json()
    headers = {name.lower(): value for name, value in echoed["headers"].items()}
    assert headers["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"


async def test_the_site_entry_sends_pages_to_the_portal_pool(
    echo_everywhere: tuple[GatewayUnderTest, EchoUpstream], http: aiohttp.ClientSession
) -> None:
    gateway, upstream = echo_everywhere
    before = upstream.requests
    async with http.get(gateway.api("/catalog?q=lamp"), headers={"Cookie": "s=1"}) as response:
        assert response.status == 200
        echoed = await response.json()
    assert echoed["headers"]["Cookie"] == "s=1"
    assert upstream.requests == before + 1
