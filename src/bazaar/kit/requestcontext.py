"""Context variables for the request or message being handled.

Set once at the edge (HTTP middleware, consumer loop) and read wherever a log line
or an outgoing message needs them, so no function has to thread them through.
"""

from __future__ import annotations

import contextvars
import re
import uuid

current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "current_request_id", default=None
)
current_correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "current_correlation_id", default=None
)

_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def sane_request_id(value: str | None) -> str:
    """The caller's request id when it is sane (1 to 128 letters, digits and ``._:-``),
    else a new one: the id goes into logs, messages and response headers, so nothing
    else a caller sends is passed on. The gateway and the services judge alike."""
    if value is not None and _SANE_REQUEST_ID.fullmatch(value):
        return value
    return uuid.uuid4().hex
