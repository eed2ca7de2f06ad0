"""Catalog routes (``/api/catalog``): parse, call the service, shape the answer."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, status

from bazaar.catalog import service
from bazaar.catalog.schemas import ItemCreate, ItemPage, ItemRead, ItemUpdate
from bazaar.kit.errors import ValidationFailed
from bazaar.kit.http import DbSession, ReadSession, require_roles
from bazaar.kit.pagination import Page
from bazaar.kit.tokens import Principal

router = APIRouter(prefix="/api/catalog", tags=["catalog"])

Seller = Annotated[Principal, Depends(require_roles("seller", "admin"))]

MAX_IDS = 100


@router.get("/items", response_model=ItemPage)
async def list_items(
    session: ReadSession,
    page: Page,
    q: Annotated[str | None, Query(max_length=200, description="Full-text search")] = None,
    kind: Literal["good", "service"] | None = None,
    seller_id: uuid.UUID | None = None,
    ids: Annotated[
        str | None,
        Query(
            max_length=MAX_IDS * 40,
            description="Up to 100 comma-separated item ids: exactly those items, "
            "withdrawn ones included",
        ),
    ] = None,
) -> ItemPage:
    """Active items; with ``q``, those matching it, best match first.

    With ``ids`` (up to 100 comma-separated item ids) the answer is exactly those items,
    **withdrawn ones included** (``active: false``), in the order asked, on one page
    (``next_cursor`` is null); unknown ids are left out, and the other filters and
    paging do not apply. This is how orders prices a whole cart in one call and
    notices items that were withdrawn.
    """
    if ids is not None:
        return await service.get_items(session, _parse_ids(ids))
    return await service.list_items(
        session, page, query_text=(q or "").strip() or None, kind=kind, seller_id=seller_id
    )


def _parse_ids(raw: str) -> list[uuid.UUID]:
    parts = [part.strip() for part in raw.split(",") if part.strip()]
    if not parts or len(parts) > MAX_IDS:
        raise ValidationFailed(
            f"ids takes 1 to {MAX_IDS} item ids",
            errors=[{"field": "ids", "message": f"1 to {MAX_IDS} comma-separated ids"}],
        )
    try:
        return [uuid.UUID(part) for part in parts]
    except ValueError as exc:
        raise ValidationFailed(
            "ids must be item ids (UUIDs)",
            errors=[{"field": "ids", "message": "not a list of UUIDs"}],
        ) from exc


@router.get("/items/{item_id}", response_model=ItemRead)
async def get_item(item_id: uuid.UUID, session: ReadSession) -> ItemRead:
    return await service.get_item(session, item_id)


@router.post("/items", response_model=ItemRead, status_code=status.HTTP_201_CREATED)
async def create_item(data: ItemCreate, seller: Seller, session: DbSession) -> ItemRead:
    return await service.create_item(session, seller, data)


@router.patch("/items/{item_id}", response_model=ItemRead)
async def update_item(
    item_id: uuid.UUID, data: ItemUpdate, caller: Seller, session: DbSession
) -> ItemRead:
    """Change fields of one's own item (admins: any item); ``active: false`` withdraws it."""
    return await service.update_item(session, caller, item_id, data)
