"""Forwarding: one request to one healthy replica, streamed both ways, tried again when safe.

A try has deadlines: ``connect_timeout_seconds`` to open a connection, then
``try_timeout_seconds`` from the moment the request is sent until the response head
arrives; the body then streams for as long as it flows (``body_idle_timeout_seconds``
between chunks, none by default), so an event stream reaches the client event by
event. A try is repeated on another replica only when that cannot cause a second
effect:

* the connection could not be opened (nothing was sent): any method;
* the connection broke before any response byte: idempotent methods (GET, HEAD,
  OPTIONS, PUT, DELETE) and requests carrying an ``Idempotency-Key``, and only when
  the body can be sent again (it was read whole, or not begun).

A POST that may have reached a replica is never sent twice: it answers 502.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from bazaar.gateway.balancer import Balancer, Replica
from bazaar.gateway.errors import (
    BadGateway,
    GatewayTimeout,
    IncompleteBody,
    UpstreamUnavailable,
)
from bazaar.gateway.metrics import GatewayMetrics
from bazaar.gateway.routing import ServiceRoute
from bazaar.gateway.settings import GatewaySettings
from bazaar.gateway.upstream import (
    BodyBroke,
    ConnectFailed,
    ConnectionBroke,
    UpstreamClient,
    UpstreamResponse,
)
from bazaar.kit.errors import DomainError, PayloadTooLarge
from bazaar.kit.logging import get_logger

log = get_logger(__name__)

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
# RFC 9110 §7.6.1: meaningful for one connection only, never forwarded.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Replaced by the gateway's own values (a client must not choose its forwarded address;
# the upstream client frames the body it sends itself).
_DROP_FROM_REQUEST = HOP_BY_HOP | {
    "host",
    "content-length",
    "expect",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-request-id",
}
_DROP_FROM_RESPONSE = frozenset(name.encode() for name in HOP_BY_HOP | {"x-request-id"})
_NO_BODY_STATUSES = frozenset({204, 304})
EVENT_STREAM = "text/event-stream"


class StreamedBody:
    """A request body passed on as it arrives, counted against the size limit."""

    def __init__(self, content: aiohttp.StreamReader, limit: int) -> None:
        self._content = content
        self._limit = limit
        self.started = False
        self.too_large = False
        self.client_failed = False  # the client's upload broke off (not the service's fault)
        self.received = 0

    async def chunks(self) -> AsyncIterator[bytes]:
        self.started = True
        try:
            async for chunk in self._content.iter_any():
                self.received += len(chunk)
                if self.received > self._limit:
                    # Raising (rather than stopping) aborts the upstream request: the
                    # service sees a broken body, never a complete truncated one.
                    self.too_large = True
                    raise PayloadTooLarge(f"The request body is over {self._limit} bytes")
                yield chunk
        except (aiohttp.ClientPayloadError, ConnectionError):
            self.client_failed = True
            raise


class Forwarder:
    """Sends requests to the services over pooled keep-alive connections."""

    def __init__(
        self,
        settings: GatewaySettings,
        balancer: Balancer,
        metrics: GatewayMetrics,
        client: UpstreamClient,
    ) -> None:
        self.settings = settings
        self.balancer = balancer
        self.metrics = metrics
        self.client = client
        # The try's deadline runs from the moment the request is sent until the head
        # of the answer; a small body then gets the same time between its pieces, a
        # streamed one the body's idle timeout.
        self._try_timeout = settings.try_timeout_seconds
        self._body_idle_timeout = settings.body_idle_timeout_seconds
        self._max_tries = max(1, settings.max_tries)
        self._max_body = settings.max_body_bytes
        self._trusted_proxies = tuple(settings.trusted_proxies)
        self._buffered_body = min(settings.buffered_body_bytes, settings.max_body_bytes)
        self._buffered_response = settings.buffered_response_bytes

    async def forward(
        self, request: web.Request, service: ServiceRoute, request_id: str
    ) -> web.StreamResponse:
        """The service's answer to ``request``, streamed back (or a DomainError raised)."""
        method = request.method
        length = request.content_length
        if length is not None and length > self._max_body:
            raise PayloadTooLarge(f"The request body is over {self._max_body} bytes")
        body: bytes | StreamedBody | None
        if not request.body_exists:
            body = None
        elif length is not None and length <= self._buffered_body:
            body = await request.read()
        else:
            body = StreamedBody(request.content, self._max_body)
        headers = self._upstream_headers(request, request_id)
        retry_safe = method in IDEMPOTENT_METHODS or "Idempotency-Key" in request.headers
        path_qs = request.raw_path

        pool = service.pool
        tried: tuple[Replica, ...] = ()
        # What to answer when the replicas run out: unreachable (503) unless one broke
        # the connection after taking the request (502).
        exhausted: DomainError | None = None
        while True:
            replica = self.balancer.pick(pool, tried)
            if replica is None:
                raise exhausted or UpstreamUnavailable(
                    f"No healthy replica of {service.name} is available"
                )
            tried = (*tried, replica)
            replica.outstanding += 1
            release_replica = True
            try:
                try:
                    upstream = await self.client.send(
                        replica.url,
                        method,
                        path_qs,
                        headers,
                        body.chunks() if isinstance(body, StreamedBody) else body,
                        head_timeout=self._try_timeout,
                        resend_on_stale=retry_safe,
                    )
                except ConnectFailed as exc:
                    # Nothing was sent: another replica may take it, whatever the method.
                    self.balancer.connection_refused(replica, exc)
                    if not isinstance(exhausted, BadGateway):
                        exhausted = UpstreamUnavailable(
                            f"No replica of {service.name} could be reached ({len(tried)} tried)"
                        )
                    if len(tried) < self._max_tries:
                        self.metrics.upstream_retries.labels(pool).inc()
                        continue
                    raise exhausted from exc
                except TimeoutError as exc:
                    log.warning(
                        "upstream_timeout",
                        service=service.name,
                        replica=replica.url,
                        method=method,
                        path=request.path,
                        seconds=self._try_timeout,
                    )
                    raise GatewayTimeout(
                        f"{service.name} did not answer within {self._try_timeout:g} s"
                    ) from exc
                except ConnectionBroke as exc:
                    if isinstance(body, StreamedBody) and body.too_large:
                        raise PayloadTooLarge(
                            f"The request body is over {self._max_body} bytes"
                        ) from exc
                    if isinstance(body, StreamedBody) and body.client_failed:
                        raise IncompleteBody("The request body broke off") from exc
                    self.balancer.request_failed(replica, exc)
                    exhausted = BadGateway(f"{service.name} closed the connection before answering")
                    replayable = not (isinstance(body, StreamedBody) and body.started)
                    if retry_safe and replayable and len(tried) < self._max_tries:
                        self.metrics.upstream_retries.labels(pool).inc()
                        continue
                    raise exhausted from exc
                replica.failures = 0
                release_replica = False
                return await self._relay(request, upstream, replica, request_id)
            finally:
                if release_replica:
                    replica.outstanding -= 1

    def _upstream_headers(self, request: web.Request, request_id: str) -> list[tuple[str, str]]:
        incoming = request.headers
        drop = _DROP_FROM_REQUEST
        connection = incoming.get("Connection")
        if connection is not None and connection.lower() not in ("keep-alive", "close"):
            # Headers the client named in Connection are hop-by-hop too.
            drop = drop | {token.strip().lower() for token in connection.split(",")}
        headers = [(name, value) for name, value in incoming.items() if name.lower() not in drop]
        headers.append(("X-Request-ID", request_id))
        headers.append(("X-Forwarded-For", self._forwarded_for(request)))
        headers.append(("X-Forwarded-Proto", request.scheme))
        host = incoming.get("Host")
        if host is not None:
            headers.append(("X-Forwarded-Host", host))
        if "Accept-Encoding" not in incoming:
            # The service must not compress for a client that did not ask.
            headers.append(("Accept-Encoding", "identity"))
        return headers

    def _forwarded_for(self, request: web.Request) -> str:
        """The peer's address; a trusted proxy's own X-Forwarded-For chain comes first."""
        peer = request.remote or ""
        if not self._trusted_proxies or not peer:
            return peer
        chain = request.headers.get("X-Forwarded-For")
        if chain is None:
            return peer
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return peer
        if any(address in network for network in self._trusted_proxies):
            return f"{chain}, {peer}"
        return peer

    async def _relay(
        self,
        request: web.Request,
        upstream: UpstreamResponse,
        replica: Replica,
        request_id: str,
    ) -> web.StreamResponse:
        """Send the upstream response back: in one write when small, else as it arrives."""
        try:
            headers: CIMultiDict[str] = CIMultiDict(
                [
                    (name.decode("latin-1"), value.decode("utf-8", "surrogateescape"))
                    for name, value in upstream.headers
                    if name.lower() not in _DROP_FROM_RESPONSE
                ]
            )
            headers["X-Request-ID"] = request_id
            status = upstream.status
            length = upstream.content_length
            if (
                request.method == "HEAD"
                or status in _NO_BODY_STATUSES
                or (length is not None and length <= self._buffered_response)
            ):
                try:
                    payload = await upstream.read(self._try_timeout)
                except TimeoutError as exc:
                    log.warning(
                        "upstream_answer_stalled",
                        replica=replica.url,
                        path=request.path,
                        seconds=self._try_timeout,
                    )
                    raise GatewayTimeout("The service's answer stalled") from exc
                except BodyBroke as exc:
                    raise BadGateway("The service's answer broke off") from exc
                return web.Response(
                    status=status, reason=upstream.reason, body=payload, headers=headers
                )
            return await self._stream(request, upstream, status, headers)
        finally:
            replica.outstanding -= 1
            upstream.release()

    async def _stream(
        self,
        request: web.Request,
        upstream: UpstreamResponse,
        status: int,
        headers: CIMultiDict[str],
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=status, reason=upstream.reason, headers=headers)
        writer = await response.prepare(request)
        assert writer is not None
        if upstream.content_type == EVENT_STREAM:
            # The client learns the stream is open before the first event.
            writer.send_headers()
        try:
            async for chunk in upstream.iter_chunks(self._body_idle_timeout):
                await response.write(chunk)
        except (BodyBroke, TimeoutError) as exc:
            # Headers are gone: the only honest signal left is a broken connection.
            log.warning("upstream_body_broke", path=request.path, error=repr(exc))
            upstream.close()
            _abort(request)
            return response
        except ConnectionError:
            # The client went away: the rest of the answer is not wanted.
            upstream.close()
            return response
        await response.write_eof()
        return response


def _abort(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()
