"""The forwarder's HTTP/1.1 client: pooled keep-alive connections to the replicas.

Why not ``aiohttp.ClientSession``: measured on the benchmark machine, its request
machinery (cookie jar, auth, proxy and redirect handling, three copies of the
headers, a timeout context, a request and a response object of many fields) costs
about 50 µs of CPU per request, against about 12 µs for a connection that writes
one prepared request head and hands the bytes it reads to ``httptools`` (the parser
uvicorn uses). The gateway forwards every request, so that difference is most of
its own cost (``docs/adr/0009-gateway-upstream-client.md``). The control plane
(health checks, keys, revocations, OpenAPI) keeps ``aiohttp``.

What it does, and no more: one request at a time per connection (no pipelining);
``Content-Length`` or chunked request bodies (streamed, with back-pressure); responses
by length, chunked or until the connection closes; a deadline for the response head
and an optional idle deadline between body chunks; idle connections kept LIFO for
``keepalive_seconds``; at most ``limit`` exchanges at once (callers queue beyond;
idle connections do not count, as in aiohttp).
A request that meets a pooled connection the replica has just closed is sent once
more on a fresh one when that cannot cause a second effect (as aiohttp did).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterable, AsyncIterator
from typing import cast
from urllib.parse import urlsplit

import httptools

# Without a body, these go without Content-Length; the others say 0 (as aiohttp did).
_NO_CONTENT_LENGTH_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
# Unread answer bytes at which a connection stops reading until the consumer catches up.
_HIGH_WATER = 2**16


class UpstreamError(Exception):
    """A failure talking to a replica."""


class ConnectFailed(UpstreamError):
    """No connection could be opened: nothing was sent."""


class ConnectionBroke(UpstreamError):
    """The connection failed before the response head arrived (the request may have arrived)."""


class BodyBroke(UpstreamError):
    """The response body broke off before its end."""


class Origin:
    """One replica's address: its idle connections and the ``Host`` it is called by."""

    __slots__ = ("host", "host_header", "idle", "port")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"an upstream must be an http:// URL, not {url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.host_header = parts.netloc
        self.idle: list[UpstreamConnection] = []


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection, one request at a time."""

    def __init__(self, origin: Origin, client: UpstreamClient) -> None:
        self.origin = origin
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.broken = False
        self.idle_since = 0.0
        self.reused = False
        self._loop = asyncio.get_running_loop()
        self._parser: httptools.HttpResponseParser | None = None
        self._parser_spent = False
        self._head: asyncio.Future[None] | None = None
        self._data: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._paused = False
        self._reading_paused = False
        self._head_only = False
        self._informational = False
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.complete = False
        self.keep_alive = False
        self.error: UpstreamError | None = None

    # --- asyncio callbacks ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        if parser is None or self.complete:
            # Bytes nobody asked for: this connection can no longer be trusted.
            self._fail(ConnectionBroke("the replica sent bytes outside a response"))
            return
        try:
            parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionBroke(f"the replica's answer is not HTTP/1.1: {exc}"))

    def eof_received(self) -> bool | None:
        return False  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.client.forget(self)
        if self._parser is not None and not self.complete and self._until_eof():
            # A response without a length ends with its connection.
            self.on_message_complete()
            self.keep_alive = False
        else:
            self._fail(
                ConnectionBroke("the replica closed the connection")
                if self.status == 0
                else BodyBroke("the replica closed the connection mid-answer"),
            )
        writable = self._writable
        if writable is not None and not writable.done():
            writable.set_exception(ConnectionBroke("the replica closed the connection"))

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        writable = self._writable
        if writable is not None and not writable.done():
            writable.set_result(None)

    # --- httptools callbacks ------------------------------------------------------------

    def on_status(self, status: bytes) -> None:
        self.reason = status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            # An interim answer (100 Continue, 103 Early Hints): the real one follows.
            self._informational = True
            self.headers = []
            return
        self.status = status
        self.keep_alive = self._parser.should_keep_alive()
        head = self._head
        if head is not None and not head.done():
            head.set_result(None)
        if self._head_only:
            # A HEAD response has no body, whatever its Content-Length says.
            self.on_message_complete()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH_WATER and not self._reading_paused and self.transport:
            self.transport.pause_reading()
            self._reading_paused = True
        self._wake()

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        if self.complete:
            return
        self.complete = True
        self._wake()

    # --- for the client -----------------------------------------------------------------

    def begin(self, head_only: bool) -> None:
        if self._parser is None or self._parser_spent:
            self._parser = httptools.HttpResponseParser(self)
        # The parser of a HEAD's answer still waits for the body its length announced.
        self._parser_spent = head_only
        self._head = self._loop.create_future()
        self._head_only = head_only
        self._informational = False
        self.status = 0
        self.reason = b""
        self.headers = []
        self.chunks.clear()
        self.drained()  # whatever the last exchange left, this one's answer is read
        self.complete = False
        self.keep_alive = False
        self.error = None

    async def wait_head(self, timeout: float) -> None:
        head = self._head
        assert head is not None
        if not head.done():
            timer = self._loop.call_later(timeout, _expire, head)
            try:
                await head
            finally:
                timer.cancel()
        else:
            head.result()

    async def next_chunk(self, idle_timeout: float | None) -> bytes | None:
        """The next piece of the body (all that is buffered), or None at its end."""
        while not self.chunks:
            if self.complete:
                return None
            if self.error is not None:
                raise self.error
            self._data = data = self._loop.create_future()
            timer = (
                self._loop.call_later(idle_timeout, _expire, data)
                if idle_timeout is not None
                else None
            )
            try:
                await data
            finally:
                self._data = None
                if timer is not None:
                    timer.cancel()
        if len(self.chunks) == 1:
            chunk = self.chunks.popleft()
        else:
            chunk = b"".join(self.chunks)
            self.chunks.clear()
        self.drained()
        return chunk

    def drained(self) -> None:
        """The consumer took all that was buffered: read from the replica again.

        Every way of taking the buffer must end here: a connection left paused goes back
        to the pool deaf, and the next answer on it waits out its deadline."""
        self.buffered = 0
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()

    async def drain(self) -> None:
        if self._paused:
            self._writable = self._loop.create_future()
            try:
                await self._writable
            finally:
                self._writable = None

    def reusable(self) -> bool:
        return (
            self.complete
            and self.keep_alive
            and not self.broken
            and self.error is None
            and self.transport is not None
            and not self.transport.is_closing()
        )

    def close(self) -> None:
        self.broken = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.broken = True
        if self.transport is not None:
            self.transport.abort()

    # --- inside ------------------------------------------------------------------------

    def _until_eof(self) -> bool:
        """Whether the response in progress has no length (its end is the connection's)."""
        if self.status == 0 or self._head_only or self.status in (204, 304):
            return False
        for name, value in self.headers:
            lowered = name.lower()
            if lowered == b"content-length":
                return False
            if lowered == b"transfer-encoding" and b"chunked" in value.lower():
                return False
        return True

    def _fail(self, error: UpstreamError) -> None:
        self.broken = True
        if self.error is None and not self.complete:
            self.error = error
        head = self._head
        if head is not None and not head.done():
            head.set_exception(error)
        self._wake()
        if self.transport is not None:
            self.transport.abort()

    def _wake(self) -> None:
        data = self._data
        if data is not None and not data.done():
            data.set_result(None)


def _expire(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


class UpstreamResponse:
    """The head of a replica's answer; its body is read whole or as it arrives."""

    __slots__ = ("_client", "_connection", "_released", "_writer", "headers", "reason", "status")

    def __init__(
        self,
        client: UpstreamClient,
        connection: UpstreamConnection,
        writer: asyncio.Task[None] | None,
    ) -> None:
        self._client = client
        self._connection = connection
        self._writer = writer
        self._released = False
        self.status = connection.status
        self.reason = connection.reason.decode("latin-1")
        self.headers = connection.headers

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lower case)."""
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    @property
    def content_length(self) -> int | None:
        value = self.header(b"content-length")
        if value is None or not value.isdigit():
            return None
        return int(value)

    @property
    def content_type(self) -> str:
        value = self.header(b"content-type")
        if value is None:
            return ""
        return value.split(b";", 1)[0].strip().lower().decode("latin-1")

    async def read(self, idle_timeout: float | None) -> bytes:
        """The whole body (raises TimeoutError when it stalls, BodyBroke when it breaks)."""
        connection = self._connection
        if connection.complete and len(connection.chunks) <= 1:
            body = connection.chunks.popleft() if connection.chunks else b""
            connection.drained()
            return body
        parts = []
        while (chunk := await connection.next_chunk(idle_timeout)) is not None:
            parts.append(chunk)
        return b"".join(parts)

    async def iter_chunks(self, idle_timeout: float | None) -> AsyncIterator[bytes]:
        """The body as it arrives: whatever is buffered each time the consumer asks."""
        connection = self._connection
        while (chunk := await connection.next_chunk(idle_timeout)) is not None:
            yield chunk

    def release(self) -> None:
        """Done with the answer: its connection goes back to the pool, or is closed."""
        if self._released:
            return
        self._released = True
        writer = self._writer
        if writer is not None and not writer.done():
            # The replica answered before the request body was all sent.
            writer.cancel()
            self._connection.abort()
        self._client.release(self._connection)

    def close(self) -> None:
        """Drop the connection (the answer will not be read to its end)."""
        self._connection.abort()
        self.release()


class UpstreamClient:
    """Keep-alive connection pools, one per replica URL, with a limit on open connections."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        keepalive_seconds: float,
        limit: int,
    ) -> None:
        self._connect_timeout = connect_timeout
        self._keepalive = keepalive_seconds
        self._limit = max(1, limit)
        self._origins: dict[str, Origin] = {}
        self._open: set[UpstreamConnection] = set()
        # Connections in an exchange (or being opened for one); idle ones do not count.
        self._in_use = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closed = False

    @property
    def waiting(self) -> int:
        """Requests waiting for a connection because the limit is reached."""
        return sum(not waiter.done() for waiter in self._waiters)

    async def send(
        self,
        base_url: str,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes | AsyncIterable[bytes] | None,
        *,
        head_timeout: float,
        resend_on_stale: bool,
    ) -> UpstreamResponse:
        """Send one request and wait for the head of the answer.

        ``headers`` must be valid field lines (no CR or LF: the gateway's server parsed
        them); ``Host``, ``Content-Length`` and ``Transfer-Encoding`` are the client's.
        """
        origin = self._origins.get(base_url)
        if origin is None:
            origin = self._origins[base_url] = Origin(base_url)
        head = _request_head(method, target, origin.host_header, headers, body)
        while True:
            connection = await self._acquire(origin)
            connection.begin(head_only=method == "HEAD")
            writer = None
            assert connection.transport is not None
            try:
                if body is None or isinstance(body, bytes):
                    connection.transport.write(head + body if body else head)
                else:
                    connection.transport.write(head)
                    writer = asyncio.create_task(_send_chunked(connection, body))
                    writer.add_done_callback(_retrieve)
                await connection.wait_head(head_timeout)
            except ConnectionBroke:
                connection.abort()
                self.release(connection)
                if writer is not None:
                    await _settle(writer)
                if connection.reused and resend_on_stale and not isinstance(body, AsyncIterable):
                    # A pooled connection the replica closed meanwhile: once more, fresh.
                    resend_on_stale = False
                    continue
                raise
            except BaseException:
                # A timeout, or the caller went away: the answer may still come, unread.
                connection.abort()
                self.release(connection)
                if writer is not None:
                    writer.cancel()
                raise
            return UpstreamResponse(self, connection, writer)

    async def _acquire(self, origin: Origin) -> UpstreamConnection:
        """A connection to ``origin`` for one exchange; hand it back with :meth:`release`."""
        while self._in_use >= self._limit:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter
        self._in_use += 1
        idle = origin.idle
        if idle:
            now = asyncio.get_running_loop().time()
            while idle:
                connection = idle.pop()
                transport = connection.transport
                fresh = now - connection.idle_since <= self._keepalive
                if fresh and transport is not None and not transport.is_closing():
                    connection.reused = True
                    return connection
                connection.close()
                self.forget(connection)
        try:
            return await self._connect(origin)
        except BaseException:
            self._in_use -= 1
            self._wake_waiter()
            raise

    async def _connect(self, origin: Origin) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, protocol = await loop.create_connection(
                    lambda: UpstreamConnection(origin, self), origin.host, origin.port
                )
        except TimeoutError as exc:
            raise ConnectFailed(f"connecting to {origin.host}:{origin.port} timed out") from exc
        except OSError as exc:
            raise ConnectFailed(f"cannot connect to {origin.host}:{origin.port}: {exc}") from exc
        if self._closed:
            protocol.close()
            raise ConnectFailed("the client is closed")
        self._open.add(protocol)
        return protocol

    def release(self, connection: UpstreamConnection) -> None:
        """The exchange is over: keep the connection for the next one, or close it."""
        self._in_use -= 1
        if connection.reusable() and not self._closed:
            connection.idle_since = asyncio.get_running_loop().time()
            connection.origin.idle.append(connection)
        else:
            connection.close()
            self.forget(connection)
        self._wake_waiter()

    def forget(self, connection: UpstreamConnection) -> None:
        """A connection closed: it leaves the pool."""
        if connection in self._open:
            self._open.discard(connection)
            idle = connection.origin.idle
            if connection in idle:
                idle.remove(connection)

    def _wake_waiter(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def close(self) -> None:
        self._closed = True
        for connection in list(self._open):
            connection.close()
        self._open.clear()
        for origin in self._origins.values():
            origin.idle.clear()
        await asyncio.sleep(0)


def _request_head(
    method: str,
    target: str,
    host: str,
    headers: list[tuple[str, str]],
    body: bytes | AsyncIterable[bytes] | None,
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1\r\n", f"Host: {host}\r\n"]
    lines += [f"{name}: {value}\r\n" for name, value in headers]
    if body is None:
        if method not in _NO_CONTENT_LENGTH_METHODS:
            lines.append("Content-Length: 0\r\n")
    elif isinstance(body, bytes):
        lines.append(f"Content-Length: {len(body)}\r\n")
    else:
        lines.append("Transfer-Encoding: chunked\r\n")
    lines.append("\r\n")
    text = "".join(lines)
    # Each line ends in the one CRLF put there: nothing can smuggle a header or a request.
    if text.count("\n") != len(lines) or text.count("\r") != len(lines):
        raise ValueError("a request line or header holds a line break")
    # Header bytes go out as the server read them (it decoded with surrogateescape).
    return text.encode("utf-8", "surrogateescape")


async def _send_chunked(connection: UpstreamConnection, body: AsyncIterable[bytes]) -> None:
    """Stream a request body chunk by chunk; any failure aborts the connection.

    Aborting (not ending the chunked body) is the point: the replica must see a broken
    request, never a complete truncated one.
    """
    try:
        async for chunk in body:
            transport = connection.transport
            if transport is None:
                return
            if chunk:
                transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                await connection.drain()
        if connection.transport is not None:
            connection.transport.write(b"0\r\n\r\n")
    except BaseException:
        connection.abort()
        raise


async def _settle(task: asyncio.Task[None]) -> None:
    """Wait for a body writer that ended with its connection (its error is reported already)."""
    await asyncio.wait([task])


def _retrieve(task: asyncio.Task[None]) -> None:
    """A body writer's failure is seen through its connection: do not log it twice."""
    if not task.cancelled():
        task.exception()
