"""No secret or card number reaches a log line, whatever code logs it."""

from __future__ import annotations

import io
import json
import logging

from bazaar.kit.logging import configure_logging, redact_secrets


def test_secret_keys_are_blanked_at_any_depth() -> None:
    event = redact_secrets(
        None,
        "info",
        {
            "event": "payment_method_added",
            "password": "hunter22",
            "body": {"card_number": "4242424242424242", "cvc": "123", "exp_month": 12},
            "headers": [{"Authorization": "Bearer abc"}],
        },
    )
    flat = repr(event)
    assert "hunter22" not in flat
    assert "4242424242424242" not in flat
    assert "Bearer abc" not in flat
    assert event["body"]["exp_month"] == 12


def test_a_librarys_exception_is_logged_with_its_traceback() -> None:
    stream = io.StringIO()
    configure_logging("test", "json", "INFO", stream=stream)
    try:
        raise ZeroDivisionError("the library's own failure")
    except ZeroDivisionError:
        logging.getLogger("some.library").exception("it failed")

    line = json.loads(stream.getvalue().splitlines()[-1])
    assert line["level"] == "error"
    assert "Traceback (most recent call last)" in line["exception"]
    assert "ZeroDivisionError: the library's own failure" in line["exception"]
