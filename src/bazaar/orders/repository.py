"""Every query of the orders service, and only here."""

from __future__ import annotations

import functools
import uuid
from datetime import datetime

from sqlalchemy import Select, bindparam, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import raiseload

from bazaar.orders.models import Order, OrderLine


async def add_order(session: AsyncSession, order: Order) -> Order:
    session.add(order)
    await session.flush()
    return order


async def get_order(
    session: AsyncSession,
    order_id: uuid.UUID,
    *,
    for_update: bool = False,
    with_lines: bool = True,
) -> Order | None:
    """One order with its lines; ``for_update`` locks it, which is how every saga move on
    one order (a reply, the timer, a cancel request) waits for the others.

    ``with_lines=False`` skips the second query that loads the lines; reading
    ``order.lines`` then raises until :func:`load_lines`."""
    statement = _order_by("id", for_update=for_update, with_lines=with_lines)
    return (await session.execute(statement, {"key": order_id})).scalar_one_or_none()


async def get_order_by_reservation(
    session: AsyncSession, reservation_id: uuid.UUID, *, with_lines: bool = True
) -> Order | None:
    """The order whose current saga round holds ``reservation_id``, locked (``with_lines``
    as for :func:`get_order`)."""
    statement = _order_by("reservation_id", for_update=True, with_lines=with_lines)
    return (await session.execute(statement, {"key": reservation_id})).scalar_one_or_none()


@functools.cache
def _order_by(column: str, *, for_update: bool, with_lines: bool) -> Select[Order]:
    """The select of one order by ``column`` = ``:key``, built once per shape: every saga
    answer runs one, and building it (with its loader options) anew each time cost more
    Python than the query's own round trip."""
    statement = select(Order).where(getattr(Order, column) == bindparam("key"))
    if for_update:
        statement = statement.with_for_update(of=Order)
    if not with_lines:
        statement = statement.options(raiseload(Order.lines))
    return statement


async def load_lines(session: AsyncSession, order: Order) -> None:
    """Load the lines of an order read without them."""
    await session.refresh(order, attribute_names=["lines"])


async def list_orders(
    session: AsyncSession,
    *,
    limit: int,
    user_id: uuid.UUID | None,
    status: str | None = None,
    after: tuple[datetime, uuid.UUID] | None = None,
) -> list[Order]:
    """Orders, newest first, keyset-paginated on (created_at, id)."""
    statement = select(Order)
    if user_id is not None:
        statement = statement.where(Order.user_id == user_id)
    if status is not None:
        statement = statement.where(Order.status == status)
    if after is not None:
        statement = statement.where(tuple_(Order.created_at, Order.id) < tuple_(*after))
    statement = statement.order_by(Order.created_at.desc(), Order.id.desc()).limit(limit)
    return list((await session.execute(statement)).scalars())


async def list_sales(
    session: AsyncSession,
    seller_id: uuid.UUID,
    *,
    limit: int,
    after: tuple[datetime, uuid.UUID, int] | None = None,
) -> list[tuple[OrderLine, Order]]:
    """Lines of the seller's items with their orders, newest order first, keyset-paginated
    on (order's created_at, order id, line number)."""
    key = tuple_(Order.created_at, Order.id, OrderLine.line_no)
    statement = (
        select(OrderLine, Order)
        .join(Order, Order.id == OrderLine.order_id)
        .where(OrderLine.seller_id == seller_id)
    )
    if after is not None:
        statement = statement.where(key < tuple_(*after))
    statement = statement.order_by(
        Order.created_at.desc(), Order.id.desc(), OrderLine.line_no.desc()
    ).limit(limit)
    return [(row.OrderLine, row.Order) for row in await session.execute(statement)]


async def due_sagas(session: AsyncSession, now: datetime, *, limit: int) -> list[Order]:
    """Orders whose saga step is past its deadline, locked. Rows another transaction holds
    (another replica's timer, a reply being handled) are skipped, so no saga is driven
    twice at once."""
    statement = (
        select(Order)
        .where(Order.step_deadline.is_not(None), Order.step_deadline <= now)
        .order_by(Order.step_deadline)
        .limit(limit)
        .with_for_update(of=Order, skip_locked=True)
    )
    return list((await session.execute(statement)).scalars())
