"""Orders tables: the order with its saga's state, and its lines. Never returned from a route."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    text,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from bazaar.kit.db import new_metadata

metadata = new_metadata()


class Base(DeclarativeBase):
    metadata = metadata


class Order(Base):
    """An order and, in the ``saga_*`` columns, where its saga stands.

    ``status`` is what the buyer sees; ``saga_step`` is the saga's finer state
    (:class:`bazaar.orders.saga.Step`). ``step_deadline`` is when the current step's
    command is due again (NULL once the saga has ended); the timer finds due sagas by it.
    """

    __tablename__ = "orders"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    status_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    total: Mapped[int] = mapped_column(BigInteger, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    payment_method_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    # Chosen by the saga when it first asks for the charge; NULL until then.
    payment_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), nullable=True, unique=True
    )
    # The catalog reservation of the saga's current round: the order's id at first, a new
    # id each time support starts a cancelled order over (so old answers cannot match).
    reservation_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), nullable=False, unique=True
    )
    saga_step: Mapped[str] = mapped_column(String(16), nullable=False)
    step_attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    step_deadline: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Why the order will end cancelled, decided when compensation starts.
    cancel_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)

    lines: Mapped[list[OrderLine]] = relationship(
        order_by="OrderLine.line_no", lazy="selectin", cascade="all, delete-orphan"
    )

    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'confirmed', 'cancelling', 'cancelled')", name="status"
        ),
        CheckConstraint("total > 0", name="total_positive"),
        Index("ix_orders_user_created", "user_id", "created_at", "id"),
        Index("ix_orders_created", "created_at", "id"),
        Index(
            "ix_orders_step_deadline",
            "step_deadline",
            postgresql_where=text("step_deadline IS NOT NULL"),
        ),
    )


class OrderLine(Base):
    """One item of an order, priced (and titled) as the catalog had it when ordered."""

    __tablename__ = "order_lines"

    order_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True
    )
    line_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    seller_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    title: Mapped[str] = mapped_column(String(200), nullable=False)
    unit_price: Mapped[int] = mapped_column(BigInteger, nullable=False)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    line_total: Mapped[int] = mapped_column(BigInteger, nullable=False)

    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("line_total = unit_price * quantity", name="line_total"),
        Index("ix_order_lines_seller", "seller_id", "order_id"),
    )
