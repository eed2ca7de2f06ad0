"""Catalog routes (``/api/catalog``): parse, call the service, shape the answer."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, status

from bazaar.catalog import service
from bazaar.catalog.schemas import ItemCreate, ItemPage, ItemRead, ItemUpdate
from bazaar.kit.http import DbSession, require_roles
from bazaar.kit.pagination import Page
from bazaar.kit.tokens import Principal

router = APIRouter(prefix="/api/catalog", tags=["catalog"])

Seller = Annotated[Principal, Depends(require_roles("seller", "admin"))]


@router.get("/items", response_model=ItemPage)
async def list_items(
    session: DbSession,
    page: Page,
    q: Annotated[str | None, Query(max_length=200, description="Full-text search")] = None,
    kind: Literal["good", "service"] | None = None,
    seller_id: uuid.UUID | None = None,
) -> ItemPage:
    """Active items; with ``q``, those matching it, best match first."""
    return await service.list_items(
        session, page, query_text=(q or "").strip() or None, kind=kind, seller_id=seller_id
    )


@router.get("/items/{item_id}", response_model=ItemRead)
async def get_item(item_id: uuid.UUID, session: DbSession) -> ItemRead:
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
