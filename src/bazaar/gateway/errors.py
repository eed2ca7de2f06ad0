"""The refusals the gateway answers itself, as problem+json (RFC 9457).

Domain errors from :mod:`bazaar.kit.errors` are reused where they fit (invalid token,
forbidden, too large, rate limited); the ones below exist only at the gateway.
Every answer carries the request's ``X-Request-ID``.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from bazaar.kit.errors import DomainError, NotFound, ServiceUnavailable, problem_body

PROBLEM_JSON = "application/problem+json"


class RouteNotFound(NotFound):
    code = "not_found"
    title = "No such API path"


class BadPath(DomainError):
    status = 400
    code = "bad_path"
    title = "The request path is not acceptable"


class IncompleteBody(DomainError):
    """The client's upload broke off before its end."""

    status = 400
    code = "incomplete_body"
    title = "The request body is incomplete"


class UpstreamUnavailable(ServiceUnavailable):
    """No healthy replica could take the request (or the pool is empty)."""

    code = "service_unavailable"
    title = "The service is unavailable"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


class BadGateway(DomainError):
    """The replica failed after the request may have reached it; not safe to try again."""

    status = 502
    code = "bad_gateway"
    title = "The service failed to answer"


class GatewayTimeout(DomainError):
    status = 504
    code = "gateway_timeout"
    title = "The service did not answer in time"


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str | None = None,
    *,
    request_id: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> web.Response:
    response = web.Response(
        status=status,
        body=orjson.dumps(problem_body(status, code, title, detail, **extra)),
        content_type=PROBLEM_JSON,
        headers=headers,
    )
    response.headers["X-Request-ID"] = request_id
    return response


def error_response(error: DomainError, request_id: str) -> web.Response:
    return problem_response(
        error.status,
        error.code,
        error.title,
        error.detail,
        request_id=request_id,
        headers=error.headers(),
        **error.extra,
    )
