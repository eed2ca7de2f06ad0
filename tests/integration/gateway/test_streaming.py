"""Bodies both ways: event streams as produced, large bodies streamed, the 1 MiB limit."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import aiohttp

from tests.integration.gateway.conftest import GatewayUnderTest, Keys, bearer
from tests.integration.gateway.standins import EchoUpstream

ONE_MIB = 1024 * 1024


async def test_an_event_stream_reaches_the_client_event_by_event(
    echo_everywhere: tuple[GatewayUnderTest, EchoUpstream], http: aiohttp.ClientSession
) -> None:
    gateway, upstream = echo_everywhere
    async with http.get(gateway.api("/api/auctions/a1/stream/sse")) as response:
        assert response.status == 200
        assert response.content_type == "text/event-stream"
        first = await response.content.readuntil(b"\n\n")
        assert first == b'event: bid\ndata: {"n": 1}\n\n'
        # The upstream is still waiting to send event 2: event 1 was not held back.
        assert not upstream.sse_proceed.is_set()
        upstream.sse_proceed.set()
        second = await response.content.readuntil(b"\n\n")
        assert second == b'event: closed\ndata: {"n": 2}\n\n'
        assert await response.content.read() == b""


async def test_a_large_response_streams_through_intact(
    echo_everywhere: tuple[GatewayUnderTest, EchoUpstream], http: aiohttp.ClientSession
) -> None:
    gateway, _ = echo_everywhere
    size = 8 * ONE_MIB + 123
    digest = hashlib.sha256()
    received = 0
    async with http.get(gateway.api(f"/api/catalog/files/big?bytes={size}")) as response:
        assert response.status == 200
        async for chunk in response.content.iter_any():
            digest.update(chunk)
            received += len(chunk)
    block = bytes(range(256)) * 256
    expected = hashlib.sha256()
    for offset in range(0, size, len(block)):
        expected.update(block[: min(len(block), size - offset)])
    assert received == size
    assert digest.hexdigest() == expected.hexdigest()


async def _chunks(total: int, piece: int = 32 * 1024) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        size = min(piece, total - sent)
        yield b"x" * size
        sent += size


async def test_request_bodies_reach_the_service_whole(
    echo_everywhere: tuple[GatewayUnderTest, EchoUpstream],
    keys: Keys,
    http: aiohttp.ClientSession,
) -> None:
    gateway, _ = echo_everywhere
    seller = bearer(keys.current.token(["seller"]))
    url = gateway.api("/api/catalog/items")
    for size in (0, 10, 64 * 1024, 512 * 1024, ONE_MIB):  # buffered and streamed
        body = b"x" * size
        async with http.post(url, data=body, headers=seller) as response:
            assert response.status == 200, size
            echoed = await response.json()
            assert echoed["body_length"] == size
            assert echoed["body_sha256"] == hashlib.sha256(body).hexdigest()
    # Chunked (no Content-Length): streamed and counted.
    async with http.post(url, data=_chunks(700 * 1024), headers=seller) as response:
        assert response.status == 200
        assert (await response.json())["body_length"] == 700 * 1024


async def test_a_body_over_one_mib_is_refused_with_413(
    echo_everywhere: tuple[GatewayUnderTest, EchoUpstream],
    keys: Keys,
    http: aiohttp.ClientSession,
) -> None:
    gateway, upstream = echo_everywhere
    seller = bearer(keys.current.token(["seller"]))
    url = gateway.api("/api/catalog/items")
    async with http.post(url, data=b"x" * (ONE_MIB + 1), headers=seller) as response:
        assert response.status == 413
        assert response.content_type == "application/problem+json"
        assert (await response.json())["code"] == "payload_too_large"
    assert upstream.requests == 0  # refused on its Content-Length, before forwarding

    # Without a Content-Length the gateway counts the bytes as they stream.
    async with http.post(url, data=_chunks(2 * ONE_MIB), headers=seller) as response:
        assert response.status == 413
        assert (await response.json())["code"] == "payload_too_large"
        assert "X-Request-ID" in response.headers
