"""A value PostgreSQL refuses is the client's error (422), and nothing of the request stays;
any other database error is still the platform's (500)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel
from sqlalchemy import func, insert, select

from bazaar.kit.db import transaction
from bazaar.kit.http import install_error_handlers
from tests.integration.kit.conftest import ServiceDatabase, effects


class Effect(BaseModel):
    # Deliberately no length or character rules: the database is the last line.
    message_id: str


@pytest.fixture
async def client(service_db: ServiceDatabase) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/effects", status_code=201)
    async def add(effect: Effect) -> dict[str, str]:
        async with transaction(service_db.sessions) as session:
            # Two rows in one transaction: the first must not stay when the second fails.
            await session.execute(insert(effects).values(message_id="first-of-two", times=1))
            await session.execute(insert(effects).values(message_id=effect.message_id, times=1))
        return {"message_id": effect.message_id}

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://kit") as http:
        yield http


async def rows(service_db: ServiceDatabase) -> int:
    async with service_db.engine.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(effects)) or 0)


@pytest.mark.parametrize(
    ("message_id", "detail"),
    [
        ("a\u0000b", "Text may not contain the NUL character (U+0000)"),
        ("x" * 65, "A text is longer than allowed"),
    ],
    ids=["nul-character", "longer-than-its-column"],
)
async def test_a_value_the_database_refuses_is_a_422_and_nothing_stays(
    client: httpx.AsyncClient, service_db: ServiceDatabase, message_id: str, detail: str
) -> None:
    response = await client.post("/effects", json={"message_id": message_id})

    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == "invalid_value"
    assert body["detail"] == detail
    assert await rows(service_db) == 0


async def test_other_database_errors_stay_the_platforms(
    client: httpx.AsyncClient, service_db: ServiceDatabase
) -> None:
    # The same key twice: a conflict inside the request's own transaction is a bug of the
    # route, not something the client sent wrong.
    response = await client.post("/effects", json={"message_id": "first-of-two"})

    assert response.status_code == 500, response.text
    assert response.json()["code"] == "internal_error"
    assert await rows(service_db) == 0
