"""Structured logs: JSON in production, readable on a terminal, never a secret.

Request id, trace id and correlation id are bound once per request or message in
``structlog.contextvars`` and appear on every line logged while handling it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog

# Keys whose values never reach a log line, whatever code logs them.
_SECRET_KEYS = frozenset(
    {
        "password",
        "new_password",
        "client_secret",
        "secret",
        "card_number",
        "number",
        "cvc",
        "authorization",
        "access_token",
        "refresh_token",
        "token",
    }
)


def _redact(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {
            key: "[redacted]" if str(key).lower() in _SECRET_KEYS else _redact(inner)
            for key, inner in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(inner) for inner in value]
    return value


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor: blank every value whose key names a secret."""
    for key in list(event_dict):
        if key.lower() in _SECRET_KEYS:
            event_dict[key] = "[redacted]"
        else:
            event_dict[key] = _redact(event_dict[key])
    return event_dict


class _CurrentStderr:
    """Whatever ``sys.stderr`` is when a line is written, not when logging was set up.

    A process's stderr does not change, but a test runner or a CLI test harness swaps
    it and closes its stand-in afterwards; a logger holding the stand-in would then
    fail on every line.
    """

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(
    service: str, log_format: str = "json", level: str = "INFO", stream: TextIO | None = None
) -> None:
    """Configure structlog and the stdlib root logger for one process, writing to
    ``stream`` (a test's buffer), by default to stderr."""
    output: Any = stream if stream is not None else _CurrentStderr()
    renderer: Any
    if log_format == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    else:
        renderer = structlog.processors.JSONRenderer()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=output),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    # Libraries log through the stdlib; render them the same way.
    handler = logging.StreamHandler(output)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                # A library's exception (logger.exception) keeps its traceback, as ours do.
                structlog.processors.format_exc_info,
                renderer,
            ],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "uvicorn.access", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
