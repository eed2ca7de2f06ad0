"""``Idempotency-Key`` for POSTs that create something (API.md "idempotency").

The same caller repeating a key with the same body within 24 hours gets the first
response (status and body) again and causes no second effect, also when both
requests arrive at once; the same key with another body is refused with 422
``idempotency_key_reused``.

How: the key is inserted into ``idempotency_keys`` in the request's own transaction,
before the effect, and the response is stored in that row before commit. A
concurrent repeat blocks on the uncommitted key (PostgreSQL's unique index makes it
wait), then finds the stored response. If the first request fails, its transaction
rolls back with its key, and a retry runs afresh. Payments, whose answer comes a
provider call and a transaction later, takes and stores the key in two steps with the
same functions (:func:`claim_key`, :func:`store_response`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

import orjson
from fastapi import Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import ColumnElement, and_, delete, func, select, update
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


@dataclass(frozen=True, slots=True)
class StoredKey:
    """What an earlier request left under a key: its body's hash, a note of the taker's
    (payments keeps the payment's id there), and its answer once stored."""

    request_hash: str
    note: str | None
    status_code: int | None
    response: Any


def _key_is(principal: str, scope: str, key: str) -> ColumnElement[bool]:
    return and_(
        idempotency_keys.c.principal == principal,
        idempotency_keys.c.scope == scope,
        idempotency_keys.c.key == key,
    )


async def claim_key(
    session: AsyncSession,
    *,
    principal: str,
    scope: str,
    key: str,
    request_hash: str,
    note: str | None = None,
) -> StoredKey | None:
    """Take the key in the caller's transaction: None when taken now, else what the
    earlier taker left. A key older than :data:`KEY_LIFETIME` is forgotten first; a
    concurrent taker waits on the unique index until the first transaction ends."""
    where = _key_is(principal, scope, key)
    await session.execute(
        delete(idempotency_keys).where(
            where, idempotency_keys.c.created_at < func.now() - KEY_LIFETIME
        )
    )
    taken = await session.execute(
        insert(idempotency_keys)
        .values(principal=principal, scope=scope, key=key, request_hash=request_hash, note=note)
        .on_conflict_do_nothing()
        .returning(idempotency_keys.c.key)
    )
    if taken.first() is not None:
        return None
    return await stored_key(session, principal=principal, scope=scope, key=key)


async def stored_key(session: AsyncSession, *, principal: str, scope: str, key: str) -> StoredKey:
    row = (
        await session.execute(
            select(
                idempotency_keys.c.request_hash,
                idempotency_keys.c.note,
                idempotency_keys.c.status_code,
                idempotency_keys.c.response,
            ).where(_key_is(principal, scope, key))
        )
    ).one()
    return StoredKey(row.request_hash, row.note, row.status_code, row.response)


async def store_response(
    session: AsyncSession,
    *,
    principal: str,
    scope: str,
    key: str,
    status_code: int,
    response: Any,
) -> StoredKey:
    """Store the key's answer unless one is stored already (whoever stores first decides
    what every repeat gets); the answer stored."""
    await session.execute(
        update(idempotency_keys)
        .where(_key_is(principal, scope, key), idempotency_keys.c.response.is_(None))
        .values(status_code=status_code, response=response)
    )
    return await stored_key(session, principal=principal, scope=scope, key=key)


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
    earlier = await claim_key(
        session, principal=principal, scope=scope, key=key, request_hash=fingerprint
    )
    if earlier is not None:
        if earlier.request_hash != fingerprint:
            raise IdempotencyKeyReused()
        return JSONBytesResponse(
            earlier.response,
            status_code=earlier.status_code or status_code,
            headers={"Idempotent-Replayed": "true"},
        )
    result = await action()
    content = result.model_dump(mode="json")
    await session.execute(
        update(idempotency_keys)
        .where(_key_is(principal, scope, key))
        .values(status_code=status_code, response=content)
    )
    return JSONBytesResponse(content, status_code=status_code)
