"""The catalog's HTTP shapes (API.md, "Catalog of goods and services")."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Description = Annotated[str, StringConstraints(max_length=10_000)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Price = Annotated[
    int, Field(strict=True, gt=0, le=1_000_000_000_000, description="Minor units (1250 = 12.50)")
]
Stock = Annotated[int, Field(strict=True, ge=0, le=1_000_000_000)]
Kind = Literal["good", "service"]


class ItemCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Kind
    title: Title
    description: Description = ""
    price: Price
    currency: Currency
    stock: Stock | None = Field(default=None, description="null: unlimited")


class ItemUpdate(BaseModel):
    """Only the fields sent change; ``active: false`` withdraws the item."""

    model_config = ConfigDict(extra="forbid")

    kind: Kind | None = None
    title: Title | None = None
    description: Description | None = None
    price: Price | None = None
    currency: Currency | None = None
    stock: Stock | None = None
    active: bool | None = None

    @model_validator(mode="after")
    def _no_nulls_for_required(self) -> ItemUpdate:
        for name in ("kind", "title", "description", "price", "currency", "active"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class ItemRead(BaseModel):
    id: uuid.UUID
    seller_id: uuid.UUID
    kind: Kind
    title: str
    description: str
    price: int
    currency: str
    stock: int | None
    active: bool
    created_at: datetime
    updated_at: datetime


class ItemPage(BaseModel):
    items: list[ItemRead]
    next_cursor: str | None
