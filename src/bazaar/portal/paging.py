"""Pages of a cursor list: next, previous and first links.

The API pages forward only (``next_cursor``). To offer "previous", each link also
carries the trail of cursors that led to it (``~``-separated; ``-`` is the first
page), kept to the last :data:`MAX_TRAIL` steps.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

MAX_TRAIL = 20
FIRST = "-"


@dataclass(frozen=True, slots=True)
class Pager:
    number: int
    next_url: str | None
    previous_url: str | None


def _url(base: str, params: Mapping[str, Any], cursor: str | None, trail: list[str]) -> str:
    query = {key: value for key, value in params.items() if value not in (None, "")}
    if cursor:
        query["cursor"] = cursor
    if trail:
        query["trail"] = "~".join(trail[-MAX_TRAIL:])
    return f"{base}?{urlencode(query)}" if query else base


def make_pager(
    base: str,
    params: Mapping[str, Any],
    *,
    cursor: str | None,
    trail: str | None,
    next_cursor: str | None,
) -> Pager:
    steps = [step for step in (trail or "").split("~") if step][-MAX_TRAIL:]
    next_url = _url(base, params, next_cursor, [*steps, cursor or FIRST]) if next_cursor else None
    previous_url: str | None = None
    if steps:
        back = steps[-1]
        previous_url = _url(base, params, None if back == FIRST else back, steps[:-1])
    elif cursor:
        previous_url = _url(base, params, None, [])
    return Pager(
        number=len(steps) + (2 if cursor and not steps else 1),
        next_url=next_url,
        previous_url=previous_url,
    )
