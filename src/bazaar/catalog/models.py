"""Catalog tables. Never returned from a route: ``schemas.py`` shapes the answers."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import TSVECTOR, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bazaar.kit.db import new_metadata

metadata = new_metadata()

# Title words weigh more than description words in the search ranking.
SEARCH_DOCUMENT = (
    "setweight(to_tsvector('english', coalesce(title, '')), 'A') || "
    "setweight(to_tsvector('english', coalesce(description, '')), 'B')"
)


class Base(DeclarativeBase):
    metadata = metadata


class Item(Base):
    __tablename__ = "items"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    seller_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False, index=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    title: Mapped[str] = mapped_column(String(200), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    price: Mapped[int] = mapped_column(BigInteger, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    # NULL is unlimited (services, usually); otherwise the units left to sell.
    stock: Mapped[int | None] = mapped_column(Integer, nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    search: Mapped[str] = mapped_column(TSVECTOR, Computed(SEARCH_DOCUMENT, persisted=True))

    __table_args__ = (
        CheckConstraint("kind IN ('good', 'service')", name="kind"),
        CheckConstraint("price > 0", name="price_positive"),
        CheckConstraint("stock IS NULL OR stock >= 0", name="stock_not_negative"),
        Index("ix_items_search", "search", postgresql_using="gin"),
        Index("ix_items_active_created", "active", "created_at", "id"),
    )


# --- stock reservations ------------------------------------------------------------------


class StockReservation(Base):
    """One line of a reservation: ``quantity`` units of one item, taken out of its stock.

    ``held`` units wait for the buyer's payment and come back at ``expires_at``;
    ``committed`` ones are sold; ``released`` and ``expired`` ones went back to stock.
    The reservation id is the caller's (the order's id), so a command sent again finds it.
    """

    __tablename__ = "stock_reservations"

    reservation_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    item_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("items.id"), primary_key=True
    )
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )

    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("status IN ('held', 'committed', 'released', 'expired')", name="status"),
        # The reaper's look-up: holds past their expiry.
        Index(
            "ix_stock_reservations_held_expiry",
            "expires_at",
            postgresql_where=text("status = 'held'"),
        ),
    )


class StockRefusal(Base):
    """A reservation that was refused, remembered so that the same command sent again gets
    the same answer (and does not take stock that arrived in the meantime)."""

    __tablename__ = "stock_refusals"

    reservation_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    reason: Mapped[str] = mapped_column(String(32), nullable=False)
    item_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )

    __table_args__ = (
        CheckConstraint("reason IN ('out_of_stock', 'item_unavailable')", name="reason"),
    )
