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


# --- stock: commands from orders, replies as catalog events --------------------------
#
# A reservation is identified by the caller's id (the order's id), so a command sent
# again (a saga's retry, a redelivery) finds the reservation it already made. Every
# command is answered by an event on ``bazaar.catalog`` carrying the same
# ``reservation_id``; the command's correlation id travels on.


class StockLine(Message):
    TYPE = "bazaar.catalog.stock-line"
    TOPIC = TOPIC

    item_id: UUID
    quantity: int


class ReserveStock(Message):
    """Hold ``quantity`` of each line for ``reservation_id`` until committed, released or
    expired (``hold_seconds``)."""

    TYPE = "bazaar.catalog.command.reserve_stock"
    TOPIC = COMMANDS_TOPIC

    reservation_id: UUID
    lines: list[StockLine]
    hold_seconds: int = 900


class CommitStock(Message):
    """The reservation is sold: its units leave stock for good."""

    TYPE = "bazaar.catalog.command.commit_stock"
    TOPIC = COMMANDS_TOPIC

    reservation_id: UUID


class ReleaseStock(Message):
    """Give the reservation's units back, whether held or already committed (a refund)."""

    TYPE = "bazaar.catalog.command.release_stock"
    TOPIC = COMMANDS_TOPIC

    reservation_id: UUID
    reason: str


class StockReserved(Message):
    TYPE = "bazaar.catalog.stock.reserved"
    TOPIC = TOPIC

    reservation_id: UUID
    lines: list[StockLine]
    expires_at: datetime


class StockReservationRefused(Message):
    """Nothing was held. ``reason``: ``out_of_stock`` or ``item_unavailable`` (unknown or
    withdrawn item)."""

    TYPE = "bazaar.catalog.stock.reservation_refused"
    TOPIC = TOPIC

    reservation_id: UUID
    reason: Literal["out_of_stock", "item_unavailable"]
    item_id: UUID | None = None


class StockCommitted(Message):
    TYPE = "bazaar.catalog.stock.committed"
    TOPIC = TOPIC

    reservation_id: UUID


class StockReleased(Message):
    """The units are back in stock (also the answer for a reservation that never existed
    or had expired, so a compensation always completes)."""

    TYPE = "bazaar.catalog.stock.released"
    TOPIC = TOPIC

    reservation_id: UUID
    reason: str
