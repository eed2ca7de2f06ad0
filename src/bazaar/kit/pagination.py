"""Cursor pagination (API.md "lists"): ``?limit=&cursor=`` → ``{items, next_cursor}``.

A cursor is the sort key of the last item returned, opaque to clients (base64url of
JSON). Lists use keyset pagination on that key, so a page costs the same however
deep it is and rows inserted meanwhile neither repeat nor vanish.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import Depends, Query
from pydantic import BaseModel

from bazaar.kit.errors import ValidationFailed


class InvalidCursor(ValidationFailed):
    code = "invalid_cursor"
    title = "The cursor is not one this list gave out"


def encode_cursor(*key: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(key))).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    """The sort key inside ``cursor``; :class:`InvalidCursor` if it is not one of ours."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError) as exc:
        raise InvalidCursor(errors=[{"field": "cursor", "message": "malformed"}]) from exc
    if not isinstance(key, list) or len(key) != arity:
        raise InvalidCursor(errors=[{"field": "cursor", "message": "malformed"}])
    return key


T = TypeVar("T")


def cursor_part(parse: Callable[[str], T], value: object) -> T:
    """One part of a decoded cursor's key, parsed (``uuid.UUID``, ``datetime.fromisoformat``,
    ``int``); :class:`InvalidCursor` if it does not parse."""
    try:
        return parse(str(value))
    except (TypeError, ValueError) as exc:
        raise InvalidCursor(errors=[{"field": "cursor", "message": "malformed"}]) from exc


class PageParams(BaseModel):
    limit: int
    cursor: str | None


async def page_params(
    limit: Annotated[int, Query(ge=1, le=100, description="Items per page")] = 20,
    cursor: Annotated[str | None, Query(max_length=500, description="From next_cursor")] = None,
) -> PageParams:
    return PageParams(limit=limit, cursor=cursor)


Page = Annotated[PageParams, Depends(page_params)]
