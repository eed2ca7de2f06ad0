"""Cross-site request forgery: every state-changing request carries the session's token.

Forms send it in a hidden ``csrf_token`` field, htmx requests in the ``X-CSRF-Token``
header (set once on ``<body>``). The token lives in the encrypted session cookie, is
new for every session and again at sign-in, and is compared in constant time.
``SameSite=Lax`` on the cookie is the second line of defence.
"""

from __future__ import annotations

import hmac

from fastapi import Request

from bazaar.portal.session import session_of

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class CsrfRejected(Exception):
    """A state-changing request without the session's CSRF token."""


async def verify_csrf(request: Request) -> None:
    """A router dependency: refuse unsafe requests that do not prove they come from our page."""
    if request.method not in UNSAFE_METHODS:
        return
    sent: object = request.headers.get(CSRF_HEADER)
    if not sent and request.headers.get("content-type", "").startswith(_FORM_TYPES):
        sent = (await request.form()).get(CSRF_FIELD)
    expected = session_of(request).csrf_token
    if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfRejected()
