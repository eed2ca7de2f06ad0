"""The gateway's HTTP surface: the proxy for ``/api/...`` and its own few endpoints.

Every request passes the same gate in :func:`proxy_request`: a request id, the route
table, the token (when one is sent), the rate limits, the route's roles; then the
forwarder streams the service's answer back. The gateway's own endpoints are
``/api/health``, ``/api/openapi.json``, ``/api/docs`` and, outside ``/api``,
``/healthz``, ``/readyz`` and ``/metrics``. Each answer carries ``X-Request-ID``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from yarl import URL

from bazaar.gateway.access import authorize, identify
from bazaar.gateway.errors import BadPath, RouteNotFound, error_response, problem_response
from bazaar.gateway.openapi import DOCS_PAGE, docs_assets
from bazaar.gateway.runtime import Gateway
from bazaar.kit.errors import DomainError, InvalidToken, NotFound
from bazaar.kit.logging import get_logger
from bazaar.kit.requestcontext import sane_request_id

if TYPE_CHECKING:
    from aiohttp.web_urldispatcher import _InfoDict

log = get_logger(__name__)

GATEWAY = web.AppKey("gateway", Gateway)
STAFF_ROLES = frozenset({"support", "admin"})
OWN_PREFIX = "gateway"

OwnHandler = Callable[[web.Request, Gateway], Awaitable[web.StreamResponse]]


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(value), status=status, content_type="application/json")


# --- the proxy ----------------------------------------------------------------------


async def proxy_request(request: web.Request) -> web.StreamResponse:
    """Check, limit and forward one request to its service."""
    gateway = request.app[GATEWAY]
    started = time.perf_counter()
    request_id = sane_request_id(request.headers.get("X-Request-ID"))
    prefix = "unmatched"
    try:
        path = request.path
        if "/." in path and _has_dot_segment(path):
            raise BadPath("Paths with '.' or '..' segments are not accepted")
        match = gateway.routes.match(request.method, path)
        if match is None:
            raise RouteNotFound(f"There is no API path {path}")
        service = match.service
        prefix = service.name
        address = request.remote or ""
        try:
            principal = await identify(gateway.verifier, request.headers.get("Authorization"))
        except InvalidToken:
            # Forged tokens still count against the sender's address.
            await gateway.limiter.check(address, None)
            raise
        await gateway.limiter.check(address, principal.subject if principal else None)
        authorize(match.access, principal)
        response = await gateway.forwarder.forward(request, service, request_id)
    except DomainError as error:
        response = error_response(error, request_id)
    except Exception as exc:
        log.exception("gateway_error", path=request.path, error=repr(exc))
        response = problem_response(
            500,
            "internal_error",
            "Internal error",
            "Something went wrong in the gateway",
            request_id=request_id,
        )
    gateway.metrics.observe(prefix, response.status, time.perf_counter() - started)
    return response


def _has_dot_segment(path: str) -> bool:
    return any(segment in (".", "..") for segment in path.split("/"))


# --- the gateway's own endpoints ----------------------------------------------------


def own_endpoint(handler: OwnHandler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Give an own endpoint the gateway's request id, problem answers and metrics."""

    async def endpoint(request: web.Request) -> web.StreamResponse:
        gateway = request.app[GATEWAY]
        started = time.perf_counter()
        request_id = sane_request_id(request.headers.get("X-Request-ID"))
        try:
            response = await handler(request, gateway)
            response.headers["X-Request-ID"] = request_id
        except DomainError as error:
            response = error_response(error, request_id)
        gateway.metrics.observe(OWN_PREFIX, response.status, time.perf_counter() - started)
        return response

    return endpoint


async def api_health(request: web.Request, gateway: Gateway) -> web.StreamResponse:
    """``{status}`` for anyone; support and admin also see every pool's replicas.

    ``degraded`` when a pool that has replicas has no healthy one; a pool with none
    configured (a service not deployed) shows in the details only.
    """
    principal = await identify(gateway.verifier, request.headers.get("Authorization"))
    pools = gateway.balancer.pools
    down = [pool for pool in pools.values() if pool.replicas and not pool.healthy_replicas()]
    status = "degraded" if down else "ok"
    body: dict[str, Any] = {"status": status}
    if principal is not None and principal.has_any(STAFF_ROLES):
        body["services"] = {
            name: {
                "healthy": bool(pool.healthy_replicas()),
                "replicas": [replica.as_dict() for replica in pool.replicas],
            }
            for name, pool in sorted(pools.items())
        }
    return _json(body)


async def api_openapi(request: web.Request, gateway: Gateway) -> web.StreamResponse:
    document = await gateway.openapi.document(gateway.control_http)
    return web.Response(body=document, content_type="application/json")


async def api_docs(request: web.Request, gateway: Gateway) -> web.StreamResponse:
    return web.Response(text=DOCS_PAGE, content_type="text/html")


def docs_asset_endpoint() -> OwnHandler:
    assets = docs_assets()

    async def api_docs_asset(request: web.Request, gateway: Gateway) -> web.StreamResponse:
        path = assets.get(request.match_info["name"])
        if path is None:
            raise NotFound("No such documentation asset")
        response = web.FileResponse(path)
        response.headers["Cache-Control"] = "public, max-age=86400"
        return response

    return api_docs_asset


async def healthz(request: web.Request, gateway: Gateway) -> web.StreamResponse:
    return _json({"status": "ok"})


async def readyz(request: web.Request, gateway: Gateway) -> web.StreamResponse:
    """Ready once every replica has been checked once (before, the pools are guesses)."""
    if gateway.balancer.check_rounds == 0:
        return problem_response(
            503,
            "not_ready",
            "Not ready",
            "The first health check of the upstreams has not finished",
            request_id=sane_request_id(request.headers.get("X-Request-ID")),
        )
    return _json({"status": "ready"})


async def metrics(request: web.Request, gateway: Gateway) -> web.StreamResponse:
    response = web.Response(body=generate_latest(gateway.metrics.registry))
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


def add_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/healthz", own_endpoint(healthz), allow_head=False)
    router.add_get("/readyz", own_endpoint(readyz), allow_head=False)
    router.add_get("/metrics", own_endpoint(metrics), allow_head=False)
    router.add_get("/api/health", own_endpoint(api_health))
    router.add_get("/api/openapi.json", own_endpoint(api_openapi))
    router.add_get("/api/docs", own_endpoint(api_docs))
    router.add_get("/api/docs/", own_endpoint(api_docs))
    router.add_get("/api/docs/assets/{name}", own_endpoint(docs_asset_endpoint()))
    # Everything else is the proxy's (404 problems for paths no service claims).
    proxy = CatchAllResource(name="proxy")
    router.register_resource(proxy)
    proxy.add_route("*", proxy_request)


class CatchAllResource(web.Resource):
    """Every path, matched without a regular expression: the proxy's resource.

    The router tries it last (it is indexed under "/"); the route table, not the
    router, decides what a path means.
    """

    @property
    def canonical(self) -> str:
        return "/"

    def _match(self, path: str) -> dict[str, str]:
        return {}

    def raw_match(self, path: str) -> bool:
        return False

    def add_prefix(self, prefix: str) -> None:
        raise NotImplementedError("the gateway is not mounted as a sub-application")

    def get_info(self) -> _InfoDict:
        return {"path": "/"}

    def url_for(self, **parts: str) -> URL:
        return URL("/")
