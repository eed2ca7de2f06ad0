"""Sessions: a transaction per unit of work, none for an answer read by one statement."""

from __future__ import annotations

import pytest
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import DeclarativeBase

from bazaar.kit.db import WriteInReadSession, create_read_session_factory, transaction
from tests.integration.kit.conftest import ServiceDatabase, effects


async def in_transaction_on_server(connection: AsyncConnection) -> bool:
    """What the driver's connection says (asyncpg tracks the server's transaction status)."""
    raw = await connection.get_raw_connection()
    return bool(raw.driver_connection.is_in_transaction())  # type: ignore[union-attr]


async def test_a_read_session_reads_committed_rows_without_opening_a_transaction(
    service_db: ServiceDatabase,
) -> None:
    async with transaction(service_db.sessions) as session:
        await session.execute(insert(effects).values(message_id="m1", times=1))

    reads = create_read_session_factory(service_db.engine)
    async with reads() as session:
        count = await session.scalar(select(func.count()).select_from(effects))
        # No BEGIN went to the server: the connection is idle between statements.
        assert not await in_transaction_on_server(await session.connection())

    assert count == 1


async def test_a_unit_of_work_still_runs_in_one_transaction(service_db: ServiceDatabase) -> None:
    async with transaction(service_db.sessions) as session:
        await session.scalar(select(func.count()).select_from(effects))
        assert await in_transaction_on_server(await session.connection())


async def test_a_statements_values_stay_out_of_its_error(service_db: ServiceDatabase) -> None:
    # Errors are logged; a token or an e-mail address a request carried must not be.
    secret = "refresh-token-5f1c9e"
    async with transaction(service_db.sessions) as session:
        await session.execute(insert(effects).values(message_id=secret, times=1))

    with pytest.raises(IntegrityError) as caught:
        async with transaction(service_db.sessions) as session:
            await session.execute(insert(effects).values(message_id=secret, times=1))

    assert "duplicate key" in str(caught.value)
    assert secret not in str(caught.value)


class _Base(DeclarativeBase):
    pass


class _Effect(_Base):
    __table__ = effects


async def test_a_read_session_refuses_to_write(service_db: ServiceDatabase) -> None:
    # In autocommit a write would land at once, outside any unit of work.
    reads = create_read_session_factory(service_db.engine)
    async with reads() as session:
        with pytest.raises(WriteInReadSession):
            await session.execute(insert(effects).values(message_id="m1", times=1))
        with pytest.raises(WriteInReadSession):
            await session.execute(update(effects).values(times=2))
        session.add(_Effect(message_id="m2", times=1))
        with pytest.raises(WriteInReadSession):
            await session.flush()
        session.expunge_all()
        assert await session.scalar(select(func.count()).select_from(effects)) == 0
