"""Cursors are opaque to clients, and a cursor we did not give out is a clear 422."""

from __future__ import annotations

import pytest

from bazaar.kit.pagination import InvalidCursor, decode_cursor, encode_cursor


def test_a_cursor_round_trips_its_sort_key() -> None:
    cursor = encode_cursor("2026-11-25T10:00:00+00:00", "7b1d")
    assert decode_cursor(cursor, 2) == ["2026-11-25T10:00:00+00:00", "7b1d"]


@pytest.mark.parametrize(
    "cursor", ["", "!!!", "bm90IGpzb24", encode_cursor(1), encode_cursor({"a": 1})]
)
def test_foreign_cursors_are_refused(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor, 2)
