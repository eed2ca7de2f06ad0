"""Every query of the catalog, and only here."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    DateTime,
    Integer,
    Select,
    String,
    Table,
    and_,
    any_,
    bindparam,
    column,
    exists,
    func,
    literal,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.catalog.models import Item, StockRefusal, StockReservation

SEARCH_CONFIG = "english"


class ReservationLine(NamedTuple):
    """A line of a reservation as a stock command reads it (no ORM object)."""

    item_id: uuid.UUID
    quantity: int
    status: str


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
    return list((await session.execute(_ITEMS_BY_ID, {"ids": list(item_ids)})).scalars())


# Made once (every order's pricing runs it): one array parameter, so one SQL text and one
# prepared statement whatever the number of ids.
_ITEMS_BY_ID = select(Item).where(
    Item.id == any_(bindparam("ids", type_=ARRAY(PG_UUID(as_uuid=True))))
)


# --- stock ---------------------------------------------------------------------------
#
# The stock commands' statements are Core statements on the tables (no ORM flush, no
# identity map): each order runs them, and every statement costs Python CPU.
#
# Locks, and why no lock is taken on the reservation id itself:
#
# - Item rows are always locked in id order (every function below that touches several
#   items is given them sorted), so concurrent reservations never deadlock.
# - Two commands about one reservation are serialised by rows they both lock: a
#   reservation's first item row (every ReserveStock takes or locks its lowest item id
#   before it writes or reads an answer), the unique (reservation_id, item_id) key of its
#   lines (ON CONFLICT waits for the other transaction), and its lines themselves
#   (CommitStock and ReleaseStock lock them, in item order, before deciding anything).
# - A transaction updates a reservation's lines only once it holds every item row it
#   needs, so a ReserveStock that waits on those lines (holding items) never waits on a
#   transaction that waits for its items.
#
# This relies on READ COMMITTED (the default): each statement sees what was committed
# before it started, so a statement run after a wait sees the other transaction's rows.

RESERVATIONS = cast(Table, StockReservation.__table__)
REFUSALS = cast(Table, StockRefusal.__table__)
ITEMS = cast(Table, Item.__table__)

# The statements every order runs are built once, with named parameters, so that each
# run only looks up its compiled form in SQLAlchemy's cache.

_TAKE_STOCK = (
    update(ITEMS)
    .where(
        ITEMS.c.id == bindparam("take_item", type_=PG_UUID(as_uuid=True)),
        ITEMS.c.active.is_(True),
        or_(ITEMS.c.stock.is_(None), ITEMS.c.stock >= bindparam("take_quantity", type_=Integer)),
    )
    .values(stock=ITEMS.c.stock - bindparam("take_quantity", type_=Integer))
    .returning(ITEMS.c.id)
)

_wanted = (
    func.unnest(
        bindparam("item_ids", type_=ARRAY(PG_UUID(as_uuid=True))),
        bindparam("quantities", type_=ARRAY(Integer)),
    )
    .table_valued(column("item_id", PG_UUID(as_uuid=True)), column("quantity", Integer))
    .render_derived(name="wanted")
)
_line_reservation = bindparam("line_reservation", type_=PG_UUID(as_uuid=True))
_ADD_HELD_LINES = (
    insert(RESERVATIONS)
    .from_select(
        ["reservation_id", "item_id", "quantity", "status", "expires_at"],
        select(
            _line_reservation,
            _wanted.c.item_id,
            _wanted.c.quantity,
            literal("held", String),
            bindparam("line_expires_at", type_=DateTime(timezone=True)),
        ).where(
            ~exists().where(RESERVATIONS.c.reservation_id == _line_reservation),
            ~exists().where(REFUSALS.c.reservation_id == _line_reservation),
        ),
    )
    .on_conflict_do_nothing()
    .returning(RESERVATIONS.c.item_id)
)

_commit_reservation = bindparam("commit_reservation", type_=PG_UUID(as_uuid=True))
_locked = (
    select(RESERVATIONS.c.item_id, RESERVATIONS.c.quantity, RESERVATIONS.c.status)
    .where(RESERVATIONS.c.reservation_id == _commit_reservation)
    .order_by(RESERVATIONS.c.item_id)
    .with_for_update()
    .cte("locked")
)
_COMMIT_HELD_LINES = (
    select(_locked.c.item_id, _locked.c.quantity, _locked.c.status)
    .add_cte(
        update(RESERVATIONS)
        .where(
            RESERVATIONS.c.reservation_id == _commit_reservation,
            RESERVATIONS.c.status == "held",
            select(func.bool_and(_locked.c.status.in_(["held", "committed"]))).scalar_subquery(),
        )
        .values(status="committed", updated_at=bindparam("commit_at"))
        .returning(RESERVATIONS.c.item_id)
        .cte("committed")
    )
    .order_by(_locked.c.item_id)
)


async def take_stock(session: AsyncSession, item_id: uuid.UUID, quantity: int) -> bool:
    """Take ``quantity`` units of an active item if that many are left (unlimited stock
    stays unlimited); False, and nothing changed, otherwise. The condition and the
    decrement are one statement, so stock never goes below zero."""
    result = await session.execute(_TAKE_STOCK, {"take_item": item_id, "take_quantity": quantity})
    return result.first() is not None


async def return_stock(session: AsyncSession, item_id: uuid.UUID, quantity: int) -> None:
    """Put units back (withdrawn items too: they may be offered again)."""
    await session.execute(
        update(ITEMS).where(ITEMS.c.id == item_id).values(stock=ITEMS.c.stock + quantity)
    )


async def add_held_lines(
    session: AsyncSession,
    reservation_id: uuid.UUID,
    lines: Sequence[tuple[uuid.UUID, int]],
    expires_at: datetime,
) -> list[uuid.UUID]:
    """Insert the reservation's lines as held, unless it has an answer already; the item
    ids of the lines inserted (all of them, or none when it had one).

    One statement is the look-up for an earlier answer and the write: the lines are not
    inserted if the reservation already has lines or a refusal (committed before this
    statement began), and ON CONFLICT DO NOTHING covers a concurrent command inserting
    the same lines (it waits for that transaction, then skips them)."""
    result = await session.execute(
        _ADD_HELD_LINES,
        {
            "line_reservation": reservation_id,
            "item_ids": [item_id for item_id, _ in lines],
            "quantities": [quantity for _, quantity in lines],
            "line_expires_at": expires_at,
        },
    )
    return list(result.scalars())


async def commit_held_lines(
    session: AsyncSession, reservation_id: uuid.UUID, now: datetime
) -> list[ReservationLine]:
    """Lock the reservation's lines (in item order) and, if every one is held or committed,
    mark the held ones committed; the lines as they were before, either way.

    One statement: the first CTE locks the lines (waiting for a transaction that changes
    them, such as the reaper) and reads their latest state; the UPDATE runs only if all
    of those are held or committed (its aggregate reads every locked line before it
    changes any). A reservation with an expired, released or no line is left unchanged
    for the caller to decide, its lines locked."""
    result = await session.execute(
        _COMMIT_HELD_LINES, {"commit_reservation": reservation_id, "commit_at": now}
    )
    return [ReservationLine(row.item_id, row.quantity, row.status) for row in result]


async def mark_committed(session: AsyncSession, reservation_id: uuid.UUID, now: datetime) -> None:
    """Mark every line of the reservation committed (its lines are locked already)."""
    await session.execute(
        update(RESERVATIONS)
        .where(
            RESERVATIONS.c.reservation_id == reservation_id,
            RESERVATIONS.c.status != "committed",
        )
        .values(status="committed", updated_at=now)
    )


async def reservation_lines(
    session: AsyncSession, reservation_id: uuid.UUID, *, for_update: bool = False
) -> list[StockReservation]:
    """The reservation's lines in item order; ``for_update`` locks them in that order."""
    statement = (
        select(StockReservation)
        .where(StockReservation.reservation_id == reservation_id)
        .order_by(StockReservation.item_id)
    )
    if for_update:
        statement = statement.with_for_update()
    return list((await session.execute(statement)).scalars())


async def get_refusal(session: AsyncSession, reservation_id: uuid.UUID) -> StockRefusal | None:
    return await session.get(StockRefusal, reservation_id)


async def add_refusal(
    session: AsyncSession, reservation_id: uuid.UUID, reason: str, item_id: uuid.UUID | None
) -> None:
    await session.execute(
        insert(REFUSALS)
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
