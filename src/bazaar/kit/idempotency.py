"""``Idempotency-Key`` for POSTs that create something (API.md "idempotency").

The same caller repeating a key with the same body within 24 hours gets the first
response (status and body) again and causes no second effect, also when both
requests arrive at once; the same key with another body is refused with 422
``idempotency_key_reused``.

How: the key is inserted into ``idempotency_keys`` in the request's own transaction,
before the effect, and the response is stored in that row before commit. A
concurrent repeat blocks on the uncommitted key (PostgreSQL's unique index makes it
wait), then finds the stored response. If the first request fails, its transaction
rolls back with its key, and a retry runs afresh.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated, Any

import orjson
from fastapi import Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import and_, delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.kit.errors import IdempotencyKeyReused
from bazaar.kit.tables import idempotency_keys

KEY_LIFETIME = timedelta(hours=24)

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x20-\x7E]+$",
        description="Repeat a request safely: the same key and body get the first answer again.",
    ),
]


class JSONBytesResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def request_fingerprint(body: BaseModel | dict[str, Any] | None) -> str:
    if isinstance(body, BaseModel):
        payload: Any = body.model_dump(mode="json")
    else:
        payload = body or {}
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


async def respond_once(
    session: AsyncSession,
    *,
    principal: str,
    scope: str,
    key: str | None,
    body: BaseModel | dict[str, Any] | None,
    status_code: int,
    action: Callable[[], Awaitable[BaseModel]],
) -> JSONResponse:
    """Run ``action`` once per (principal, scope, key) and answer with its result.

    Without a key, ``action`` simply runs. ``scope`` names the operation
    (``"orders.create"``) so one key may serve different endpoints independently.
    """
    if key is None:
        result = await action()
        return JSONBytesResponse(result.model_dump(mode="json"), status_code=status_code)
    fingerprint = request_fingerprint(body)
    where = and_(
        idempotency_keys.c.principal == principal,
        idempotency_keys.c.scope == scope,
        idempotency_keys.c.key == key,
    )
    await session.execute(
        delete(idempotency_keys).where(
            where, idempotency_keys.c.created_at < func.now() - KEY_LIFETIME
        )
    )
    claimed = await session.execute(
        insert(idempotency_keys)
        .values(principal=principal, scope=scope, key=key, request_hash=fingerprint)
        .on_conflict_do_nothing()
        .returning(idempotency_keys.c.key)
    )
    if claimed.first() is None:
        stored = (
            await session.execute(
                select(
                    idempotency_keys.c.request_hash,
                    idempotency_keys.c.status_code,
                    idempotency_keys.c.response,
                ).where(where)
            )
        ).one()
        if stored.request_hash != fingerprint:
            raise IdempotencyKeyReused()
        return JSONBytesResponse(
            stored.response,
            status_code=stored.status_code,
            headers={"Idempotent-Replayed": "true"},
        )
    result = await action()
    content = result.model_dump(mode="json")
    await session.execute(
        idempotency_keys.update().where(where).values(status_code=status_code, response=content)
    )
    return JSONBytesResponse(content, status_code=status_code)
