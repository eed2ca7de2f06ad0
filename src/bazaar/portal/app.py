"""The portal's composition root: settings, the platform client, templates, the session key.

``create_app()`` builds a FastAPI app on the platform's factory (request ids,
``/healthz``, ``/readyz``, ``/metrics``) whose errors are pages, not problem+json:
a refusal the API answered is shown with its ``detail``, a page that needs a
signed-in user leads to the sign-in form and comes back after it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bazaar.kit.config import PlatformSettings
from bazaar.kit.http import create_service_app
from bazaar.kit.logging import get_logger
from bazaar.portal.access import PageForbidden, Portal, portal_of
from bazaar.portal.client import ApiError, PlatformClient, SignInRequired
from bazaar.portal.csrf import CsrfRejected
from bazaar.portal.pages import ROUTERS
from bazaar.portal.problems import Problem
from bazaar.portal.rendering import STATIC_DIR, Pages, is_htmx, see_other
from bazaar.portal.session import SessionCodec, SessionMiddleware, load_session_key, session_of
from bazaar.portal.settings import PortalSettings

log = get_logger(__name__)

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'self'; "
    "object-src 'none'"
)


class SecurityHeadersMiddleware:
    """CSP and friends on every answer; personal pages are never cached (pure ASGI)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "same-origin")
                headers.setdefault("X-Frame-Options", "DENY")
                if static:
                    headers.setdefault("Cache-Control", "public, max-age=86400")
                else:
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(
    settings: PortalSettings | None = None, platform: PlatformSettings | None = None
) -> FastAPI:
    settings = settings or PortalSettings()
    platform = platform or PlatformSettings()
    codec = SessionCodec(load_session_key(settings), settings.session_max_age_seconds)
    client = PlatformClient(
        platform.gateway_url,
        timeout_seconds=settings.api_timeout_seconds,
        connection_limit=settings.api_connection_limit,
        refresh_margin_seconds=settings.refresh_margin_seconds,
        refresh_grace_seconds=settings.refresh_grace_seconds,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await client.start()
        app.state.portal = Portal(settings=settings, client=client, pages=Pages(), codec=codec)
        log.info("portal_started", gateway_url=platform.gateway_url)
        try:
            yield
        finally:
            await client.close()

    app = create_service_app(
        "portal",
        title="Bazaar portal",
        routers=ROUTERS,
        lifespan=lifespan,
        description="Server-rendered pages over the public API.",
    )
    # Pages, not an API: no OpenAPI document of its own.
    app.router.routes[:] = [
        route for route in app.router.routes if getattr(route, "path", "") != app.openapi_url
    ]
    app.openapi_url = None
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(
        SessionMiddleware,
        codec=codec,
        cookie_name=settings.session_cookie,
        trust_forwarded=settings.trust_forwarded_headers,
    )
    app.add_middleware(SecurityHeadersMiddleware)
    install_page_errors(app)
    return app


def error_page(request: Request, problem: Problem) -> Response:
    """The problem as a page, or as a fragment for an htmx request (swapped, status 200:
    the page stays usable and the browser logs no failed request)."""
    pages = portal_of(request).pages
    if is_htmx(request):
        return pages.render(request, "_problem.html", {"problem": problem})
    return pages.render(request, "error.html", {"problem": problem}, status_code=problem.status)


def install_page_errors(app: FastAPI) -> None:
    async def on_sign_in_required(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SignInRequired)
        session = session_of(request)
        if exc.message:
            session.flash(exc.message, "warning")
        target = request.url.path
        if request.method == "GET" and request.url.query:
            target += "?" + request.url.query
        if request.method != "GET" or is_htmx(request):
            target = request.headers.get("hx-current-url") or "/"
            if "://" in target:
                target = "/" + target.split("://", 1)[1].partition("/")[2]
        return see_other(request, f"/sign-in?{_next_param(target)}")

    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_page(request, exc.problem)

    async def on_forbidden(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PageForbidden)
        return error_page(
            request,
            Problem.of(
                403,
                "forbidden",
                f"This page is for {' and '.join(exc.roles)} staff only. "
                "Your account does not have that role.",
                title="Not allowed",
            ),
        )

    async def on_csrf(request: Request, exc: Exception) -> Response:
        return error_page(
            request,
            Problem.of(
                403,
                "csrf_failed",
                "This form has expired or did not come from this site. "
                "Go back, reload the page and try again.",
                title="The form could not be accepted",
            ),
        )

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            problem = Problem.of(404, "not_found", "There is no page at this address.")
        else:
            problem = Problem.of(exc.status_code, f"http_{exc.status_code}", str(exc.detail))
        return error_page(request, problem)

    async def on_invalid_request(request: Request, exc: Exception) -> Response:
        # Malformed path or query parameters: no such page.
        return error_page(
            request, Problem.of(404, "not_found", "There is no page at this address.")
        )

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("portal_unhandled_error", error=repr(exc))
        return error_page(
            request,
            Problem.of(500, "internal_error", "Something went wrong on our side. Try again."),
        )

    app.add_exception_handler(SignInRequired, on_sign_in_required)
    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(PageForbidden, on_forbidden)
    app.add_exception_handler(CsrfRejected, on_csrf)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_invalid_request)
    app.add_exception_handler(Exception, on_unexpected)


def _next_param(target: str) -> str:
    return urlencode({"next": target})
