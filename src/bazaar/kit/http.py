"""The HTTP app factory every service uses, and its request-scoped dependencies.

``create_service_app`` gives each service the same surface: problem+json errors
(RFC 9457) for domain errors, validation errors and anything unexpected; a request
id on every answer; ``/healthz``, ``/readyz`` and ``/metrics``; and request metrics
by route template. Services add their routers and a lifespan.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bazaar.kit.db import refused_as_data, transaction
from bazaar.kit.errors import DomainError, Forbidden, InvalidToken, problem_body
from bazaar.kit.idempotency import JSONBytesResponse
from bazaar.kit.logging import get_logger
from bazaar.kit.requestcontext import current_request_id, sane_request_id
from bazaar.kit.telemetry import span, trace_id_of
from bazaar.kit.tokens import Principal, TokenVerifier, bearer_token

log = get_logger(__name__)

PROBLEM_JSON = "application/problem+json"
REQUEST_ID_HEADER = b"x-request-id"
HTTP_REQUESTS = Counter(
    "bazaar_http_requests_total",
    "HTTP requests answered, by route template, method and status",
    ["service", "route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "bazaar_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template",
    ["service", "route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

ReadinessCheck = Callable[[], Awaitable[None]]


class ProblemResponse(JSONBytesResponse):
    media_type = PROBLEM_JSON


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> ProblemResponse:
    return ProblemResponse(
        problem_body(status, code, title, detail, **extra), status_code=status, headers=headers
    )


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    errors = []
    for error in exc.errors():
        location = [str(part) for part in error.get("loc", ()) if part not in ("body",)]
        errors.append(
            {
                "field": ".".join(location) or "body",
                "message": error.get("msg", "invalid"),
                "type": error.get("type", "invalid"),
            }
        )
    return errors


def install_error_handlers(app: FastAPI) -> None:
    """Every error a service answers is problem+json with a machine ``code``."""

    async def on_domain_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, DomainError)
        return problem_response(
            exc.status, exc.code, exc.title, exc.detail, headers=exc.headers(), **exc.extra
        )

    async def on_validation_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return problem_response(
            422,
            "validation_failed",
            "The request is not valid",
            "One or more fields are missing or invalid",
            errors=_field_errors(exc),
        )

    async def on_http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        codes = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}
        return problem_response(
            exc.status_code,
            codes.get(exc.status_code, f"http_{exc.status_code}"),
            str(exc.detail),
            headers=dict(exc.headers or {}),
        )

    async def on_unexpected(_: Request, exc: Exception) -> Response:
        log.exception("unhandled_error", error=repr(exc))
        return problem_response(
            500, "internal_error", "Internal error", "Something went wrong on our side"
        )

    async def on_database_error(request: Request, exc: Exception) -> Response:
        """A value the schemas let through but PostgreSQL refuses as data (a NUL character
        in a text, a string longer than its column) is the client's: a 422. The
        transaction it was in is rolled back, so nothing of the request stays. Any
        other database error is the platform's: a 500."""
        assert isinstance(exc, DBAPIError)
        if not refused_as_data(exc):
            return await on_unexpected(request, exc)
        sqlstate = str(getattr(exc.orig, "sqlstate", ""))
        # The SQLSTATE only: PostgreSQL's message may quote the value a client sent.
        log.warning("request_value_refused", sqlstate=sqlstate)
        return problem_response(
            422,
            "invalid_value",
            "The request holds a value that cannot be stored",
            _REFUSED_VALUES.get(sqlstate, "A value is out of the range or the form allowed"),
        )

    app.add_exception_handler(DomainError, on_domain_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(DBAPIError, on_database_error)
    app.add_exception_handler(Exception, on_unexpected)


# What a client is told about a value PostgreSQL refused, by SQLSTATE (class 22).
_REFUSED_VALUES = {
    "22021": "Text may not contain the NUL character (U+0000)",
    "22P05": "Text may not contain the NUL character (U+0000)",
    "22001": "A text is longer than allowed",
    "22003": "A number is out of the range allowed",
    "22008": "A date or time is out of the range allowed",
}


class RequestContextMiddleware:
    """Request id and trace context per request, and metrics by route template (pure ASGI)."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id: str | None = None
        traceparent: str | None = None
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER:
                request_id = value.decode("latin-1")
            elif name == b"traceparent":
                traceparent = value.decode("latin-1")
        request_id = sane_request_id(request_id)
        current_request_id.set(request_id)
        started = time.perf_counter()
        status = 500
        encoded_id = request_id.encode()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (REQUEST_ID_HEADER, encoded_id)]
            await send(message)

        try:
            with span(f"{scope['method']} {scope['path']}", traceparent) as own_traceparent:
                structlog.contextvars.bind_contextvars(
                    request_id=request_id, trace_id=trace_id_of(own_traceparent)
                )
                await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            if template not in ("/metrics", "/healthz", "/readyz"):
                method = scope["method"]
                HTTP_REQUESTS.labels(self.service, template, method, str(status)).inc()
                HTTP_LATENCY.labels(self.service, template, method).observe(
                    time.perf_counter() - started
                )


def health_router(checks: Callable[[], Sequence[ReadinessCheck]]) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz() -> Response:
        failures = []
        for check in checks():
            try:
                await check()
            except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
                failures.append(f"{getattr(check, '__name__', 'check')}: {exc!r}")
        if failures:
            return problem_response(503, "not_ready", "Not ready", "; ".join(failures))
        return JSONResponse({"status": "ready"})

    @router.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


def create_service_app(
    service: str,
    *,
    title: str,
    routers: Sequence[APIRouter],
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]],
    description: str = "",
) -> FastAPI:
    """A FastAPI app with the platform's errors, request context, health and metrics."""
    app = FastAPI(
        title=title,
        description=description,
        version="1",
        lifespan=lifespan,
        openapi_url=f"/api/{service}/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.readiness_checks = []
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, service=service)
    app.include_router(health_router(lambda: app.state.readiness_checks))
    for router in routers:
        app.include_router(router)
    return app


# --- request-scoped dependencies ---------------------------------------------------


async def db_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session in a transaction that commits when the route returns (commit at the edge)."""
    async with transaction(request.app.state.sessions) as session:
        yield session


DbSession = Annotated[AsyncSession, Depends(db_session, scope="function")]


async def read_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session without a transaction, for a route that answers from one statement's read
    (see :func:`~bazaar.kit.db.create_read_session_factory`)."""
    async with request.app.state.read_sessions() as session:
        yield session


ReadSession = Annotated[AsyncSession, Depends(read_session, scope="function")]


async def current_principal(request: Request) -> Principal:
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        raise InvalidToken("An access token is required")
    verifier: TokenVerifier = request.app.state.verifier
    return await verifier.verify(token)


async def optional_principal(request: Request) -> Principal | None:
    """The caller when a token is sent (and valid), None for an anonymous request."""
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        return None
    verifier: TokenVerifier = request.app.state.verifier
    return await verifier.verify(token)


def require_roles(*roles: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that admits callers holding any of ``roles`` (403 otherwise)."""
    allowed = frozenset(roles)

    async def dependency(
        principal: Annotated[Principal, Depends(current_principal)],
    ) -> Principal:
        if not principal.has_any(allowed):
            raise Forbidden(f"This needs one of the roles: {', '.join(sorted(allowed))}")
        return principal

    return dependency


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
OptionalPrincipal = Annotated[Principal | None, Depends(optional_principal)]
