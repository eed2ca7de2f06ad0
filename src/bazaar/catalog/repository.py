"""Every query of the catalog, and only here."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, func, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.catalog.models import Item

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
