"""The catalog's rules: who may list and change items, and what each change announces.

Functions take the caller's session and never commit: the request's edge does, so
the item and the outbox row announcing it land in one transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.catalog import repository
from bazaar.catalog.errors import ItemNotFound, NotItemSeller
from bazaar.catalog.models import Item
from bazaar.catalog.schemas import ItemCreate, ItemPage, ItemRead, ItemUpdate
from bazaar.contracts.catalog import ItemCreated, ItemSnapshot, ItemUpdated, ItemWithdrawn
from bazaar.kit.messaging.outbox import publish_message
from bazaar.kit.pagination import InvalidCursor, PageParams, decode_cursor, encode_cursor
from bazaar.kit.tokens import Principal

SOURCE = "bazaar/catalog"
T = TypeVar("T")


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
            after_rank = (_cursor_part(float, rank), _cursor_part(uuid.UUID, last_id))
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
                _cursor_part(datetime.fromisoformat, created_at),
                _cursor_part(uuid.UUID, last_id),
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


def _cursor_part(parse: Callable[[str], T], value: object) -> T:
    try:
        return parse(str(value))
    except (TypeError, ValueError) as exc:
        raise InvalidCursor(errors=[{"field": "cursor", "message": "malformed"}]) from exc


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
