"""The orders repository's reads that the saga's hot path relies on."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bazaar.kit.db import create_engine, create_session_factory, transaction
from bazaar.kit.testing import DatabaseFactory
from bazaar.orders import repository
from bazaar.orders.models import Order, OrderLine


@pytest.fixture
async def sessions(
    database_factory: DatabaseFactory,
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(await database_factory.create("bazaar.orders"))
    try:
        yield create_session_factory(engine)
    finally:
        await engine.dispose()


async def an_order(sessions: async_sessionmaker[AsyncSession], lines: int) -> uuid.UUID:
    order_id, now = uuid.uuid4(), datetime.now(UTC)
    async with transaction(sessions) as session:
        await repository.add_order(
            session,
            Order(
                id=order_id,
                user_id=uuid.uuid4(),
                status="pending",
                total=1000 * lines,
                currency="EUR",
                payment_method_id=uuid.uuid4(),
                reservation_id=order_id,
                saga_step="reserving",
                step_attempts=1,
                created_at=now,
                updated_at=now,
                lines=[
                    OrderLine(
                        order_id=order_id,
                        line_no=number,
                        item_id=uuid.uuid4(),
                        seller_id=uuid.uuid4(),
                        title=f"Line {number}",
                        unit_price=1000,
                        quantity=1,
                        line_total=1000,
                    )
                    for number in range(1, lines + 1)
                ],
            ),
        )
    return order_id


async def test_an_order_read_without_its_lines_refuses_to_pretend_it_has_none(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    order_id = await an_order(sessions, lines=2)
    async with transaction(sessions) as session:
        order = await repository.get_order_by_reservation(session, order_id, with_lines=False)
        assert order is not None
        with pytest.raises(InvalidRequestError):
            _ = order.lines


async def test_the_lines_of_an_order_read_without_them_load_on_request(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    order_id = await an_order(sessions, lines=3)
    async with transaction(sessions) as session:
        order = await repository.get_order(session, order_id, for_update=True, with_lines=False)
        assert order is not None
        await repository.load_lines(session, order)
        assert [line.line_no for line in order.lines] == [1, 2, 3]
