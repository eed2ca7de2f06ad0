"""The catalog's rules: who may list and change items, what each change announces, and
how stock is reserved, sold and given back.

Functions take the caller's session and never commit: the request's edge (or the
consumer loop, for stock commands) does, so the change and the outbox row announcing
it land in one transaction.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.catalog import repository
from bazaar.catalog.errors import ItemNotFound, NotItemSeller, ReservationChanged
from bazaar.catalog.models import Item
from bazaar.catalog.schemas import ItemCreate, ItemPage, ItemRead, ItemUpdate
from bazaar.contracts.base import Message
from bazaar.contracts.catalog import (
    CommitStock,
    ItemCreated,
    ItemSnapshot,
    ItemUpdated,
    ItemWithdrawn,
    ReleaseStock,
    ReserveStock,
    StockCommitted,
    StockLine,
    StockReleased,
    StockReservationRefused,
    StockReserved,
)
from bazaar.kit.logging import get_logger
from bazaar.kit.messaging.outbox import publish_message
from bazaar.kit.pagination import PageParams, cursor_part, decode_cursor, encode_cursor
from bazaar.kit.tokens import Principal

SOURCE = "bazaar/catalog"

log = get_logger(__name__)

# A hold shorter than a second is a bug at the sender; one longer than a day would keep
# units away from buyers for too long if the sender forgot about it.
MIN_HOLD_SECONDS = 1
MAX_HOLD_SECONDS = 86_400


async def create_item(session: AsyncSession, seller: Principal, data: ItemCreate) -> ItemRead:
    item = await repository.add_item(
        session,
        Item(
            id=uuid.uuid4(),
            seller_id=uuid.UUID(seller.subject),
            kind=data.kind,
            title=data.title,
            description=data.description,
            price=data.price,
            currency=data.currency,
            stock=data.stock,
            active=True,
        ),
    )
    await _announce(session, ItemCreated, item, seller)
    return ItemRead.model_validate(item, from_attributes=True)


async def get_item(session: AsyncSession, item_id: uuid.UUID) -> ItemRead:
    item = await repository.get_item(session, item_id)
    if item is None:
        raise ItemNotFound()
    return ItemRead.model_validate(item, from_attributes=True)


async def get_items(session: AsyncSession, item_ids: list[uuid.UUID]) -> ItemPage:
    """The items named, withdrawn ones included, in the order asked; unknown ids are left out."""
    found = {item.id: item for item in await repository.get_items(session, set(item_ids))}
    ordered = [found[item_id] for item_id in dict.fromkeys(item_ids) if item_id in found]
    return ItemPage(
        items=[ItemRead.model_validate(item, from_attributes=True) for item in ordered],
        next_cursor=None,
    )


async def update_item(
    session: AsyncSession, caller: Principal, item_id: uuid.UUID, data: ItemUpdate
) -> ItemRead:
    item = await repository.get_item(session, item_id, for_update=True)
    if item is None:
        raise ItemNotFound()
    if str(item.seller_id) != caller.subject and "admin" not in caller.roles:
        raise NotItemSeller()
    was_active = item.active
    for name in data.model_fields_set:
        setattr(item, name, getattr(data, name))
    item.updated_at = datetime.now(UTC)
    await session.flush()
    event = ItemWithdrawn if was_active and not item.active else ItemUpdated
    await _announce(session, event, item, caller)
    return ItemRead.model_validate(item, from_attributes=True)


async def list_items(
    session: AsyncSession,
    page: PageParams,
    *,
    query_text: str | None,
    kind: str | None,
    seller_id: uuid.UUID | None,
) -> ItemPage:
    """Active items: by relevance when searching, newest first otherwise."""
    if query_text:
        after_rank = None
        if page.cursor:
            rank, last_id = decode_cursor(page.cursor, 2)
            after_rank = (cursor_part(float, rank), cursor_part(uuid.UUID, last_id))
        ranked = await repository.search_active_items(
            session,
            query_text,
            limit=page.limit + 1,
            kind=kind,
            seller_id=seller_id,
            after=after_rank,
        )
        items = [item for item, _ in ranked[: page.limit]]
        more = len(ranked) > page.limit
        next_cursor = encode_cursor(ranked[page.limit - 1][1], str(items[-1].id)) if more else None
    else:
        after_time = None
        if page.cursor:
            created_at, last_id = decode_cursor(page.cursor, 2)
            after_time = (
                cursor_part(datetime.fromisoformat, created_at),
                cursor_part(uuid.UUID, last_id),
            )
        found = await repository.list_active_items(
            session, limit=page.limit + 1, kind=kind, seller_id=seller_id, after=after_time
        )
        items = found[: page.limit]
        more = len(found) > page.limit
        next_cursor = (
            encode_cursor(items[-1].created_at.isoformat(), str(items[-1].id)) if more else None
        )
    return ItemPage(
        items=[ItemRead.model_validate(item, from_attributes=True) for item in items],
        next_cursor=next_cursor,
    )


async def _announce(
    session: AsyncSession, event: type[ItemSnapshot], item: Item, caller: Principal
) -> None:
    await publish_message(
        session,
        event(
            item_id=item.id,
            seller_id=item.seller_id,
            kind=item.kind,
            title=item.title,
            price=item.price,
            currency=item.currency,
            stock=item.stock,
            active=item.active,
            updated_at=item.updated_at,
        ),
        source=SOURCE,
        key=str(item.id),
        user_id=caller.subject,
    )


# --- stock ---------------------------------------------------------------------------
#
# Commands come from the order saga (``bazaar.catalog.commands``) and are answered on
# ``bazaar.catalog`` with the same reservation id. They are keyed by reservation, so one
# consumer handles a reservation's commands in order; two can still overlap (a group
# rebalance, a replica that lost its partitions but not yet its fetch), and then the row
# locks described in :mod:`bazaar.catalog.repository` serialise them: no advisory lock on
# the reservation id (it was a statement per command, on every order).
#
# The usual case runs first, writing straight away, and the rare ones (an answer already
# given, units short, a hold that expired) are told apart from its result: a ReserveStock
# is the item updates and one insert, a CommitStock one statement, besides the answer.


async def reserve_stock(
    session: AsyncSession,
    command: ReserveStock,
    *,
    now: datetime,
    correlation_id: str | None = None,
    user_id: str | None = None,
) -> None:
    """Hold every line or none: answer :class:`StockReserved` or
    :class:`StockReservationRefused`. The same reservation id asked again gets the first
    answer again."""
    answer = await _reserve(session, command, now)
    await _reply(session, answer, command.reservation_id, correlation_id, user_id)


async def _reserve(session: AsyncSession, command: ReserveStock, now: datetime) -> Message:
    reservation_id = command.reservation_id
    wanted: dict[uuid.UUID, int] = {}
    for line in command.lines:
        wanted[line.item_id] = wanted.get(line.item_id, 0) + line.quantity
    malformed = next((item_id for item_id, q in wanted.items() if q <= 0), None)
    if not wanted or malformed is not None:
        earlier = await _earlier_reservation_answer(session, reservation_id)
        return earlier or await _refuse(session, reservation_id, "item_unavailable", malformed)

    # Take each item's units in id order (the lock order). No look-up first: a command
    # asked again takes the units too, finds the lines already there when it inserts
    # them, and gives the units back below (it held the item rows meanwhile, so no other
    # reservation was refused for them: it waited, then found them back).
    items = sorted(wanted)
    taken = 0
    while taken < len(items) and await repository.take_stock(
        session, items[taken], wanted[items[taken]]
    ):
        taken += 1
    if taken == len(items):
        hold = min(max(command.hold_seconds, MIN_HOLD_SECONDS), MAX_HOLD_SECONDS)
        expires_at = now + timedelta(seconds=hold)
        lines = [(item_id, wanted[item_id]) for item_id in items]
        added = await repository.add_held_lines(session, reservation_id, lines, expires_at)
        if len(added) == len(lines):
            return StockReserved(
                reservation_id=reservation_id,
                lines=[StockLine(item_id=item_id, quantity=q) for item_id, q in lines],
                expires_at=expires_at,
            )
        if added:
            raise ReservationChanged(str(reservation_id))

    # All or nothing: give back what was taken (the item rows stay locked until the
    # transaction ends). The first item not taken is locked before the look-up, so a
    # reservation's first item is locked whichever way this went: a command about the
    # same reservation running alongside waits for this one's answer and finds it.
    for item_id in items[:taken]:
        await repository.return_stock(session, item_id, wanted[item_id])
    short = items[taken] if taken < len(items) else None
    item = None if short is None else await repository.get_item(session, short, for_update=True)
    earlier = await _earlier_reservation_answer(session, reservation_id)
    if earlier is not None:
        return earlier
    if short is None:
        # The insert saw an answer that the look-up does not: only if lines were deleted
        # by hand. Handled again from the start, it finds out which it is.
        raise ReservationChanged(str(reservation_id))
    reason = "item_unavailable" if item is None or not item.active else "out_of_stock"
    return await _refuse(session, reservation_id, reason, short)


async def _earlier_reservation_answer(
    session: AsyncSession, reservation_id: uuid.UUID
) -> Message | None:
    lines = await repository.reservation_lines(session, reservation_id)
    if lines:
        return StockReserved(
            reservation_id=reservation_id,
            lines=[StockLine(item_id=line.item_id, quantity=line.quantity) for line in lines],
            expires_at=min(line.expires_at for line in lines),
        )
    refusal = await repository.get_refusal(session, reservation_id)
    if refusal is not None:
        return StockReservationRefused(
            reservation_id=reservation_id,
            reason="out_of_stock" if refusal.reason == "out_of_stock" else "item_unavailable",
            item_id=refusal.item_id,
        )
    return None


async def _refuse(
    session: AsyncSession,
    reservation_id: uuid.UUID,
    reason: str,
    item_id: uuid.UUID | None,
) -> StockReservationRefused:
    await repository.add_refusal(session, reservation_id, reason, item_id)
    return StockReservationRefused(
        reservation_id=reservation_id,
        reason="out_of_stock" if reason == "out_of_stock" else "item_unavailable",
        item_id=item_id,
    )


async def commit_stock(
    session: AsyncSession,
    command: CommitStock,
    *,
    now: datetime,
    correlation_id: str | None = None,
    user_id: str | None = None,
) -> None:
    """Mark the reservation sold and answer :class:`StockCommitted` (again, if it already is).

    A hold that expired before the commit arrived is taken again if the units are still
    there. If they are not, or the reservation is unknown or released, nothing is
    answered: the saga's commit step then runs out of time and compensates (refunds the
    buyer), which is the honest outcome when the goods are gone.
    """
    reservation_id = command.reservation_id
    # Held (or already committed) lines are committed by this one statement; otherwise it
    # changed nothing, and the lines it returns are locked for what follows.
    lines = await repository.commit_held_lines(session, reservation_id, now)
    if not lines or any(line.status == "released" for line in lines):
        log.warning(
            "stock_commit_refused",
            reservation_id=str(reservation_id),
            reason="unknown" if not lines else "released",
        )
        return
    expired = [line for line in lines if line.status == "expired"]
    if expired:
        # Take the units again, all or none (in item order), then mark the lines sold.
        for index, line in enumerate(expired):
            if not await repository.take_stock(session, line.item_id, line.quantity):
                for taken in expired[:index]:
                    await repository.return_stock(session, taken.item_id, taken.quantity)
                log.warning(
                    "stock_commit_refused",
                    reservation_id=str(reservation_id),
                    reason="expired_and_gone",
                    item_id=str(line.item_id),
                )
                return
        await repository.mark_committed(session, reservation_id, now)
    await _reply(
        session,
        StockCommitted(reservation_id=reservation_id),
        reservation_id,
        correlation_id,
        user_id,
    )


async def release_stock(
    session: AsyncSession,
    command: ReleaseStock,
    *,
    now: datetime,
    correlation_id: str | None = None,
    user_id: str | None = None,
) -> None:
    """Give held or sold units back, and always answer :class:`StockReleased` (also for a
    reservation never made, refused or expired), so a compensation always completes."""
    reservation_id = command.reservation_id
    # Lines locked first (in item order), units returned, then the lines marked: the
    # order the repository's notes on locks ask for.
    for line in await repository.reservation_lines(session, reservation_id, for_update=True):
        if line.status in ("held", "committed"):
            await repository.return_stock(session, line.item_id, line.quantity)
            line.status = "released"
            line.updated_at = now
    await session.flush()
    await _reply(
        session,
        StockReleased(reservation_id=reservation_id, reason=command.reason),
        reservation_id,
        correlation_id,
        user_id,
    )


async def reap_expired_holds(session: AsyncSession, *, now: datetime, limit: int = 500) -> int:
    """Return the units of holds past their expiry (a saga that never came back); how many
    lines were reaped."""
    lines = await repository.expired_holds(session, now, limit=limit)
    # One update per item; the lines come sorted by item id, and a dict keeps that
    # (lock) order.
    returned: dict[uuid.UUID, int] = {}
    for line in lines:
        returned[line.item_id] = returned.get(line.item_id, 0) + line.quantity
        line.status = "expired"
        line.updated_at = now
    for item_id, quantity in returned.items():
        await repository.return_stock(session, item_id, quantity)
    await session.flush()
    if lines:
        log.info("stock_holds_expired", lines=len(lines))
    return len(lines)


async def _reply(
    session: AsyncSession,
    message: Message,
    reservation_id: uuid.UUID,
    correlation_id: str | None,
    user_id: str | None,
) -> None:
    await publish_message(
        session,
        message,
        source=SOURCE,
        key=str(reservation_id),
        correlation_id=correlation_id,
        user_id=user_id,
    )
