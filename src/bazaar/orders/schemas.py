"""The orders HTTP shapes (API.md, "Orders"). Money is integer minor units."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bazaar.orders.saga import CancelReason, OrderStatus

MAX_LINES = 100
MAX_QUANTITY = 1000

Quantity = Annotated[int, Field(strict=True, ge=1, le=MAX_QUANTITY)]


class OrderLineCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_id: uuid.UUID
    quantity: Quantity


class OrderCreate(BaseModel):
    """A cart: 1 to 100 distinct items, each 1 to 1000 units, paid with one of the caller's
    payment methods. Prices, titles and the currency come from the catalog."""

    model_config = ConfigDict(extra="forbid")

    items: Annotated[list[OrderLineCreate], Field(min_length=1, max_length=MAX_LINES)]
    payment_method_id: uuid.UUID

    @field_validator("items")
    @classmethod
    def _each_item_once(cls, items: list[OrderLineCreate]) -> list[OrderLineCreate]:
        if len({line.item_id for line in items}) != len(items):
            raise ValueError("each item may appear once; set its quantity instead")
        return items


class OrderLineRead(BaseModel):
    item_id: uuid.UUID
    title: str
    unit_price: int
    quantity: int
    line_total: int


class OrderRead(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID
    status: OrderStatus
    status_reason: CancelReason | None
    items: list[OrderLineRead]
    total: int
    currency: str
    payment_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class OrderPage(BaseModel):
    items: list[OrderRead]
    next_cursor: str | None


class SaleLineRead(BaseModel):
    """One line of an order that contains the seller's item (nothing about the buyer's
    payment)."""

    order_id: uuid.UUID
    order_status: OrderStatus
    item_id: uuid.UUID
    title: str
    unit_price: int
    quantity: int
    line_total: int
    currency: str
    ordered_at: datetime


class SalePage(BaseModel):
    items: list[SaleLineRead]
    next_cursor: str | None
