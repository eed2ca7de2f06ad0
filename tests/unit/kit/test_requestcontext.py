"""Request ids the gateway and the services pass on: the caller's when sane, else new."""

from __future__ import annotations

import re

import pytest

from bazaar.kit.requestcontext import sane_request_id


@pytest.mark.parametrize("value", ["abc", "0f3a-9c:trace.1_2", "x" * 128])
def test_a_sane_request_id_is_kept(value: str) -> None:
    assert sane_request_id(value) == value


@pytest.mark.parametrize(
    "value", [None, "", "has spaces", "x" * 129, "line\n", "ünïcode", "a;b", "<script>"]
)
def test_anything_else_gets_a_new_one(value: str | None) -> None:
    fresh = sane_request_id(value)
    assert re.fullmatch(r"[0-9a-f]{32}", fresh)
    assert fresh != sane_request_id(value)
