"""Idempotency-Key: one effect per key, the first answer again for repeats, even at once."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel
from sqlalchemy import func, insert, select

from bazaar.kit.db import transaction
from bazaar.kit.errors import IdempotencyKeyReused
from bazaar.kit.idempotency import respond_once
from tests.integration.kit.conftest import ServiceDatabase, effects


class Created(BaseModel):
    id: str
    n: int


async def create_once(
    db: ServiceDatabase, key: str | None, body: dict[str, int], gate: asyncio.Event | None = None
) -> tuple[int, bytes]:
    async with transaction(db.sessions) as session:

        async def action() -> Created:
            count = await session.scalar(select(func.count()).select_from(effects))
            await session.execute(insert(effects).values(message_id=f"m{count}-{key}", times=1))
            if gate is not None:
                await gate.wait()
            return Created(id=f"m{count}", n=body["n"])

        response = await respond_once(
            session,
            principal="user-1",
            scope="things.create",
            key=key,
            body=body,
            status_code=201,
            action=action,
        )
    return response.status_code, bytes(response.body)


async def effect_count(db: ServiceDatabase) -> int:
    async with db.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(effects)) or 0)


async def test_repeating_a_key_gives_the_first_answer_and_no_second_effect(
    service_db: ServiceDatabase,
) -> None:
    first = await create_once(service_db, "k-1", {"n": 1})
    again = await create_once(service_db, "k-1", {"n": 1})
    assert first == again
    assert first[0] == 201
    assert await effect_count(service_db) == 1


async def test_repeats_arriving_at_once_cause_one_effect(service_db: ServiceDatabase) -> None:
    gate = asyncio.Event()
    first = asyncio.create_task(create_once(service_db, "k-2", {"n": 2}, gate))
    others = [asyncio.create_task(create_once(service_db, "k-2", {"n": 2})) for _ in range(5)]
    gate.set()
    answers = await asyncio.gather(first, *others)
    assert len(set(answers)) == 1
    assert await effect_count(service_db) == 1


async def test_the_same_key_with_another_body_is_refused(service_db: ServiceDatabase) -> None:
    await create_once(service_db, "k-3", {"n": 3})
    with pytest.raises(IdempotencyKeyReused):
        await create_once(service_db, "k-3", {"n": 4})
    assert await effect_count(service_db) == 1


async def test_without_a_key_every_request_acts(service_db: ServiceDatabase) -> None:
    await create_once(service_db, None, {"n": 5})
    await create_once(service_db, None, {"n": 5})
    assert await effect_count(service_db) == 2
