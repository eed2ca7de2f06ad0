"""Catalog events on ``bazaar.catalog``; stock commands arrive on ``bazaar.catalog.commands``."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from bazaar.contracts.base import Message

TOPIC = "bazaar.catalog"
COMMANDS_TOPIC = "bazaar.catalog.commands"


class ItemSnapshot(Message):
    """The item as it stands after the change (events carry state, not diffs)."""

    TYPE = "bazaar.catalog.item"
    TOPIC = TOPIC

    item_id: UUID
    seller_id: UUID
    kind: Literal["good", "service"]
    title: str
    price: int
    currency: str
    stock: int | None
    active: bool
    updated_at: datetime


class ItemCreated(ItemSnapshot):
    TYPE = "bazaar.catalog.item.created"


class ItemUpdated(ItemSnapshot):
    TYPE = "bazaar.catalog.item.updated"


class ItemWithdrawn(ItemSnapshot):
    TYPE = "bazaar.catalog.item.withdrawn"
