"""Every query of the catalog, and only here."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, func, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.catalog.models import Item, StockRefusal, StockReservation
from bazaar.kit.db import advisory_lock

SEARCH_CONFIG = "english"


async def add_item(session: AsyncSession, item: Item) -> Item:
    session.add(item)
    await session.flush()
    await session.refresh(item)
    return item


async def get_item(
    session: AsyncSession, item_id: uuid.UUID, *, for_update: bool = False
) -> Item | None:
    statement = select(Item).where(Item.id == item_id)
    if for_update:
        statement = statement.with_for_update()
    return (await session.execute(statement)).scalar_one_or_none()


async def list_active_items(
    session: AsyncSession,
    *,
    limit: int,
    kind: str | None = None,
    seller_id: uuid.UUID | None = None,
    after: tuple[datetime, uuid.UUID] | None = None,
) -> list[Item]:
    """Active items, newest first, keyset-paginated on (created_at, id)."""
    statement = _filtered(select(Item), kind, seller_id)
    if after is not None:
        statement = statement.where(tuple_(Item.created_at, Item.id) < tuple_(*after))
    statement = statement.order_by(Item.created_at.desc(), Item.id.desc()).limit(limit)
    return list((await session.execute(statement)).scalars())


async def search_active_items(
    session: AsyncSession,
    query_text: str,
    *,
    limit: int,
    kind: str | None = None,
    seller_id: uuid.UUID | None = None,
    after: tuple[float, uuid.UUID] | None = None,
) -> list[tuple[Item, float]]:
    """Active items matching ``query_text`` (web-search syntax), best match first.

    Keyset-paginated on (rank, id): the rank of a row for one query never changes,
    so the cursor carries it. ``rank`` is computed as real (float4) so that the value
    a cursor returns compares exactly with the one recomputed for the next page.
    """
    query = func.websearch_to_tsquery(SEARCH_CONFIG, query_text)
    rank = func.ts_rank(Item.search, query)
    statement = _filtered(select(Item, rank.label("rank")), kind, seller_id).where(
        Item.search.op("@@")(query)
    )
    if after is not None:
        after_rank, after_id = after
        statement = statement.where(
            or_(rank < after_rank, and_(rank == after_rank, Item.id < after_id))
        )
    statement = statement.order_by(rank.desc(), Item.id.desc()).limit(limit)
    return [(row.Item, float(row.rank)) for row in await session.execute(statement)]


def _filtered(statement: Select[Any], kind: str | None, seller_id: uuid.UUID | None) -> Select[Any]:
    statement = statement.where(Item.active.is_(True))
    if kind is not None:
        statement = statement.where(Item.kind == kind)
    if seller_id is not None:
        statement = statement.where(Item.seller_id == seller_id)
    return statement


async def get_items(session: AsyncSession, item_ids: Collection[uuid.UUID]) -> list[Item]:
    """The items among ``item_ids`` that exist, withdrawn ones included."""
    if not item_ids:
        return []
    statement = select(Item).where(Item.id.in_(list(item_ids)))
    return list((await session.execute(statement)).scalars())


# --- stock ---------------------------------------------------------------------------
#
# Item rows are always locked in id order (every function below that touches several
# items is given them sorted), so concurrent reservations never deadlock.


async def lock_reservation_id(session: AsyncSession, reservation_id: uuid.UUID) -> None:
    """Serialise commands about one reservation until this transaction ends (a
    transaction-scoped advisory lock: works before any row of it exists)."""
    await advisory_lock(session, f"stock-reservation:{reservation_id}")


async def take_stock(session: AsyncSession, item_id: uuid.UUID, quantity: int) -> bool:
    """Take ``quantity`` units of an active item if that many are left (unlimited stock
    stays unlimited); False, and nothing changed, otherwise. The condition and the
    decrement are one statement, so stock never goes below zero."""
    result = await session.execute(
        update(Item)
        .where(
            Item.id == item_id,
            Item.active.is_(True),
            or_(Item.stock.is_(None), Item.stock >= quantity),
        )
        .values(stock=Item.stock - quantity)
        .returning(Item.id)
        .execution_options(synchronize_session=False)
    )
    return result.first() is not None


async def return_stock(session: AsyncSession, item_id: uuid.UUID, quantity: int) -> None:
    """Put units back (withdrawn items too: they may be offered again)."""
    await session.execute(
        update(Item)
        .where(Item.id == item_id)
        .values(stock=Item.stock + quantity)
        .execution_options(synchronize_session=False)
    )


async def reservation_lines(
    session: AsyncSession, reservation_id: uuid.UUID, *, for_update: bool = False
) -> list[StockReservation]:
    statement = (
        select(StockReservation)
        .where(StockReservation.reservation_id == reservation_id)
        .order_by(StockReservation.item_id)
    )
    if for_update:
        statement = statement.with_for_update()
    return list((await session.execute(statement)).scalars())


async def add_reservation_lines(session: AsyncSession, lines: Iterable[StockReservation]) -> None:
    session.add_all(list(lines))
    await session.flush()


async def get_refusal(session: AsyncSession, reservation_id: uuid.UUID) -> StockRefusal | None:
    return await session.get(StockRefusal, reservation_id)


async def add_refusal(
    session: AsyncSession, reservation_id: uuid.UUID, reason: str, item_id: uuid.UUID | None
) -> None:
    await session.execute(
        insert(StockRefusal)
        .values(reservation_id=reservation_id, reason=reason, item_id=item_id)
        .on_conflict_do_nothing()
    )


async def expired_holds(
    session: AsyncSession, now: datetime, *, limit: int
) -> list[StockReservation]:
    """Held lines past their expiry, locked; lines another transaction holds are skipped,
    so several replicas reap side by side. Sorted by item id (the lock order)."""
    statement = (
        select(StockReservation)
        .where(StockReservation.status == "held", StockReservation.expires_at <= now)
        .order_by(StockReservation.item_id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list((await session.execute(statement)).scalars())
