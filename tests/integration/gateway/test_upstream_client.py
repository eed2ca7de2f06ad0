"""The forwarder's own HTTP/1.1 client against real servers, edge cases included.

The gateway's other tests exercise it through the proxy; these pin down what a
hand-written client most easily gets wrong: reusing a connection after a HEAD,
bodies framed by chunks or by the connection's end, a pooled connection the replica
closed, deadlines, and the limit on open connections.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from bazaar.gateway.upstream import ConnectFailed, ConnectionBroke, UpstreamClient
from bazaar.kit.testing import wait_for
from bazaar.stack.ports import free_port

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def client() -> AsyncIterator[UpstreamClient]:
    upstream = UpstreamClient(connect_timeout=1.0, keepalive_seconds=4.0, limit=100)
    yield upstream
    await upstream.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


async def raw_server(
    answer: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


async def get(client: UpstreamClient, url: str, path: str = "/", method: str = "GET") -> bytes:
    response = await client.send(url, method, path, [], None, head_timeout=2, resend_on_stale=True)
    try:
        return await response.read(2)
    finally:
        response.release()


async def test_a_connection_is_reused_for_the_next_request(
    client: UpstreamClient, serve: Callable[[Handler], Awaitable[str]]
) -> None:
    peers = set()

    async def handler(request: web.Request) -> web.Response:
        peers.add(request.transport.get_extra_info("peername") if request.transport else None)
        return web.Response(text="ok")

    url = await serve(handler)
    for _ in range(5):
        assert await get(client, url) == b"ok"
    assert len(peers) == 1


async def test_a_head_answer_does_not_confuse_the_next_answer_on_the_same_connection(
    client: UpstreamClient, serve: Callable[[Handler], Awaitable[str]]
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=b"twelve bytes")

    url = await serve(handler)
    assert await get(client, url, method="HEAD") == b""
    assert await get(client, url) == b"twelve bytes"
    assert await get(client, url, method="HEAD") == b""
    assert await get(client, url) == b"twelve bytes"


async def test_an_answer_past_the_read_high_water_leaves_the_connection_reading(
    client: UpstreamClient, serve: Callable[[Handler], Awaitable[str]]
) -> None:
    # An answer that arrives whole but is bigger than what the connection buffers before
    # it stops reading (64 KiB): read at once, the connection must read again for the
    # next exchange on it. It did not, and the next answer waited out its deadline.
    peers = set()
    big = b"x" * (200 * 1024)

    async def handler(request: web.Request) -> web.Response:
        peers.add(request.transport.get_extra_info("peername") if request.transport else None)
        return web.Response(body=big if request.path == "/big" else b"small")

    url = await serve(handler)
    for _ in range(3):
        assert await get(client, url, "/big") == big
        assert await get(client, url, "/small") == b"small"
    assert len(peers) == 1


async def test_a_chunked_answer_is_read_whole_or_piece_by_piece(
    client: UpstreamClient, serve: Callable[[Handler], Awaitable[str]]
) -> None:
    # The server writes the next piece only when given a go: for the piecewise read,
    # once the client has the piece before, so the pieces cannot arrive together.
    go_on: asyncio.Queue[None] = asyncio.Queue()

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for number in range(3):
            if number:
                async with asyncio.timeout(5):
                    await go_on.get()
            await response.write(f"piece {number};".encode())
        await response.write_eof()
        return response

    url = await serve(handler)
    for _ in range(2):
        go_on.put_nowait(None)
    assert await get(client, url) == b"piece 0;piece 1;piece 2;"
    response = await client.send(url, "GET", "/", [], None, head_timeout=2, resend_on_stale=True)
    assert response.content_length is None
    pieces = []
    async for piece in response.iter_chunks(2):
        pieces.append(piece)
        go_on.put_nowait(None)
    response.release()
    assert b"".join(pieces) == b"piece 0;piece 1;piece 2;"
    assert len(pieces) >= 2


async def test_an_answer_without_a_length_ends_with_its_connection(
    client: UpstreamClient,
) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
        await writer.drain()
        writer.close()

    server, url = await raw_server(answer)
    async with server:
        assert await get(client, url) == b"until the end"
        assert await get(client, url) == b"until the end"


async def test_a_pooled_connection_the_replica_closed_is_tried_once_more_when_safe(
    client: UpstreamClient,
) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # One answer per connection; the next request on it meets a closed connection.
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")
        writer.transport.abort()

    server, url = await raw_server(answer)
    async with server:
        assert await get(client, url) == b"ok"
        assert await get(client, url) == b"ok"  # sent again on a fresh connection
        with pytest.raises(ConnectionBroke):  # not when that could cause a second effect
            await client.send(url, "POST", "/", [], b"{}", head_timeout=2, resend_on_stale=False)


async def test_a_replica_that_does_not_answer_runs_into_the_deadline(
    client: UpstreamClient,
) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    server, url = await raw_server(answer)
    async with server:
        with pytest.raises(TimeoutError):
            await client.send(url, "GET", "/", [], None, head_timeout=0.2, resend_on_stale=True)


async def test_a_replica_nobody_listens_on_cannot_be_connected(client: UpstreamClient) -> None:
    with pytest.raises(ConnectFailed):
        await get(client, f"http://127.0.0.1:{free_port()}")


async def test_a_streamed_request_body_arrives_whole_and_chunked(
    client: UpstreamClient, serve: Callable[[Handler], Awaitable[str]]
) -> None:
    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        return web.Response(text=f"{request.headers.get('Transfer-Encoding')} {len(body)}")

    async def pieces() -> AsyncIterator[bytes]:
        for _ in range(50):
            yield b"x" * 10_000

    url = await serve(handler)
    response = await client.send(
        url, "POST", "/", [], pieces(), head_timeout=2, resend_on_stale=False
    )
    assert await response.read(2) == b"chunked 500000"
    response.release()


async def test_requests_beyond_the_connection_limit_wait_for_a_free_connection(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    total = 6
    in_flight = most = 0
    released = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        async with asyncio.timeout(5):
            await released.wait()
        in_flight -= 1
        return web.Response(text="ok")

    url = await serve(handler)
    client = UpstreamClient(connect_timeout=1.0, keepalive_seconds=4.0, limit=2)
    try:
        asked = asyncio.gather(*(get(client, url) for _ in range(total)))
        # Two requests reach the server and the other four wait in the client.
        await wait_for(
            lambda: in_flight == 2 and client.waiting == total - 2,
            timeout=5,
            message="two requests in flight, four waiting for a connection",
        )
        released.set()
        answers = await asked
    finally:
        await client.close()
    assert answers == [b"ok"] * total
    assert most == 2
