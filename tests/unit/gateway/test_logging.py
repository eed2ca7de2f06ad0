"""A request the gateway cannot parse is the client's doing: one INFO line, no traceback."""

from __future__ import annotations

import io
import json
import logging

from aiohttp.http_exceptions import BadHttpMessage, LineTooLong

from bazaar.gateway.app import MalformedRequestsAreInfo
from bazaar.kit.logging import configure_logging


def aiohttp_logs(error: Exception) -> dict[str, object]:
    """What a line looks like when aiohttp's server logs ``error`` as it does (an
    exception from its request handler), with the gateway's filter in place."""
    stream = io.StringIO()
    configure_logging("gateway", "json", "INFO", stream=stream)
    logger = logging.getLogger("aiohttp.server")
    guard = MalformedRequestsAreInfo()
    logger.addFilter(guard)
    try:
        try:
            raise error
        except Exception:
            logger.exception("Error handling request from %s", "203.0.113.7")
    finally:
        logger.removeFilter(guard)
    line: dict[str, object] = json.loads(stream.getvalue().splitlines()[-1])
    return line


def test_a_malformed_request_is_one_info_line() -> None:
    for error in (BadHttpMessage("Invalid header value char"), LineTooLong("request line", 8190)):
        line = aiohttp_logs(error)
        assert line["level"] == "info"
        assert str(line["event"]).startswith("client_request_malformed: ")
        assert "exception" not in line


def test_the_gateways_own_failures_stay_errors_with_their_traceback() -> None:
    line = aiohttp_logs(RuntimeError("a bug in a handler"))
    assert line["level"] == "error"
    assert "RuntimeError: a bug in a handler" in str(line["exception"])
