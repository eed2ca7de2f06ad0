"""Context variables for the request or message being handled.

Set once at the edge (HTTP middleware, consumer loop) and read wherever a log line
or an outgoing message needs them, so no function has to thread them through.
"""

from __future__ import annotations

import contextvars

current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "current_request_id", default=None
)
current_correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "current_correlation_id", default=None
)
