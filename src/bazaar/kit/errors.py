"""Domain errors: plain exceptions that know their HTTP status and machine code.

Business code raises these and never ``HTTPException``; one handler in
:mod:`bazaar.kit.http` turns them into ``application/problem+json`` (RFC 9457).
Each service subclasses them in its own ``errors.py`` (``OutOfStock(Conflict)``).
"""

from __future__ import annotations

from typing import Any, ClassVar


class DomainError(Exception):
    """A refusal the client can understand: a status, a stable ``code`` and a sentence."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    title: ClassVar[str] = "Bad request"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra

    def headers(self) -> dict[str, str]:
        """Extra response headers this refusal needs (``Retry-After``, ``WWW-Authenticate``)."""
        return {}


class InvalidToken(DomainError):
    """Missing, malformed, forged, revoked or expired credentials."""

    status = 401
    code = "invalid_token"
    title = "Invalid or missing access token"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer error="invalid_token"'}


class Forbidden(DomainError):
    status = 403
    code = "forbidden"
    title = "Your roles do not allow this"


class NotFound(DomainError):
    status = 404
    code = "not_found"
    title = "Not found"


class Conflict(DomainError):
    status = 409
    code = "conflict"
    title = "Conflict with the current state"


class PayloadTooLarge(DomainError):
    status = 413
    code = "payload_too_large"
    title = "Request body too large"


class ValidationFailed(DomainError):
    """A 422 for rules a schema cannot express; ``errors`` names the fields."""

    status = 422
    code = "validation_failed"
    title = "The request is not valid"

    def __init__(self, detail: str | None = None, errors: list[dict[str, Any]] | None = None):
        super().__init__(detail, errors=errors or [])


class IdempotencyKeyReused(DomainError):
    status = 422
    code = "idempotency_key_reused"
    title = "This Idempotency-Key was used with a different request"


class RateLimited(DomainError):
    status = 429
    code = "rate_limited"
    title = "Too many requests"

    def __init__(self, detail: str | None = None, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = max(1, retry_after)

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class ServiceUnavailable(DomainError):
    status = 503
    code = "service_unavailable"
    title = "A service this request needs is unavailable"


def problem_body(
    status: int,
    code: str,
    title: str,
    detail: str | None = None,
    instance: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The RFC 9457 body every service and the gateway answer errors with."""
    body: dict[str, Any] = {
        "type": f"https://bazaar.dev/problems/{code}",
        "title": title,
        "status": status,
        "detail": detail or title,
        "code": code,
    }
    if instance:
        body["instance"] = instance
    body.update(extra)
    return body
