"""The auth service's refusals.

Two families: problem+json ones (:class:`~bazaar.kit.errors.DomainError` subclasses,
rendered by the platform's handler) and OAuth ones (:class:`OAuthError`), which the
OAuth endpoints answer in the shape RFC 6749 §5.2 prescribes
(``{"error": "invalid_grant", "error_description": ...}``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from bazaar.kit.errors import Conflict, DomainError, NotFound, RateLimited


class EmailTaken(Conflict):
    code = "email_taken"
    title = "An account with this email exists"


class UserNotFound(NotFound):
    code = "user_not_found"
    title = "No such user"


class LastAdmin(Conflict):
    code = "last_admin"
    title = "The last admin cannot lose the admin role"


class LoginThrottled(RateLimited):
    code = "login_throttled"
    title = "Too many failed logins; try again later"


class OAuthError(DomainError):
    """An OAuth 2.0 error response (RFC 6749 §5.2); ``code`` is the ``error`` value."""

    status: ClassVar[int] = 400

    def oauth_body(self) -> dict[str, Any]:
        return {"error": self.code, "error_description": self.detail}


class InvalidRequest(OAuthError):
    code = "invalid_request"
    title = "The request is missing a parameter or is malformed"


class InvalidGrant(OAuthError):
    code = "invalid_grant"
    title = "The grant is invalid, expired or revoked"


class InvalidClient(OAuthError):
    status = 401
    code = "invalid_client"
    title = "Client authentication failed"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Basic realm="bazaar"'}


class UnsupportedGrantType(OAuthError):
    code = "unsupported_grant_type"
    title = "This grant type is not supported"
