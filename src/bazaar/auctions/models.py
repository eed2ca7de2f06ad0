"""Auctions tables. Never returned from a route: ``schemas.py`` shapes the answers.

* ``auctions``: one row per auction, also the lock every bid, close and settlement
  step takes (so they serialise per auction and nowhere else). It carries the proxy
  state (leader, their maximum, the second-highest maximum), the stream's last
  sequence number and the settlement saga's current step.
* ``bids``: every accepted bid, manual or automatic, numbered by the stream sequence of
  the event that announced it.
* ``auction_events``: the live stream, written in the transaction of the change it
  shows, so a client resuming with ``Last-Event-ID`` gets exactly what it missed.
* ``settlement_attempts``: one row per ChargePayment the saga decided on, numbered, in
  rounds (a round per support retry).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSON, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bazaar.kit.db import new_metadata

metadata = new_metadata()

STATUSES = ("scheduled", "open", "closing", "settled", "unsold", "cancelled")


class Base(DeclarativeBase):
    metadata = metadata


def _now_column() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


class Auction(Base):
    __tablename__ = "auctions"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    seller_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False, index=True)
    title: Mapped[str] = mapped_column(String(200), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    starting_price: Mapped[int] = mapped_column(BigInteger, nullable=False)
    min_increment: Mapped[int] = mapped_column(BigInteger, nullable=False)
    reserve_price: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    buy_now_price: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    soft_close_seconds: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    max_extensions: Mapped[int | None] = mapped_column(Integer, nullable=True)
    extensions: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    # Why it is unsold or cancelled.
    status_reason: Mapped[str | None] = mapped_column(String(64), nullable=True)

    current_price: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    bid_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # The sequence number of the auction's last stream event (0: none yet).
    sequence: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    leader_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True), nullable=True)
    leader_max: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    second_max: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # The method the leader's automatic bids (and a charge as winner) use.
    leader_payment_method_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), nullable=True
    )

    winner_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True), nullable=True)
    final_price: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    payment_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True), nullable=True)

    # The settlement saga's current step: the payment it waits for, how often its
    # ChargePayment went out, and when the timer looks at it next.
    settlement_payment_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), nullable=True
    )
    settlement_sends: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    settlement_deadline: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )

    created_at: Mapped[datetime] = _now_column()
    updated_at: Mapped[datetime] = _now_column()

    __table_args__ = (
        CheckConstraint(f"status IN {STATUSES!r}", name="status"),
        CheckConstraint("starting_price > 0 AND min_increment > 0", name="prices_positive"),
        CheckConstraint("reserve_price IS NULL OR reserve_price > 0", name="reserve_positive"),
        CheckConstraint("buy_now_price IS NULL OR buy_now_price > 0", name="buy_now_positive"),
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
        # The scheduler's scans: due to open, due to close, settlement steps past deadline.
        Index("ix_auctions_status_starts_at", "status", "starts_at"),
        Index("ix_auctions_status_ends_at", "status", "ends_at"),
        Index(
            "ix_auctions_settlement_deadline",
            "settlement_deadline",
            postgresql_where="status = 'closing'",
        ),
        Index("ix_auctions_created", "created_at", "id"),
        Index("ix_auctions_status_created", "status", "created_at", "id"),
    )


class Bid(Base):
    __tablename__ = "bids"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    auction_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("auctions.id"), nullable=False
    )
    # The stream sequence of the ``bid`` event announcing it: the acceptance order.
    sequence: Mapped[int] = mapped_column(BigInteger, nullable=False)
    bidder_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    amount: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # The bidder's secret maximum once this bid was accepted.
    max_amount: Mapped[int] = mapped_column(BigInteger, nullable=False)
    auto: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    payment_method_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)

    __table_args__ = (
        UniqueConstraint("auction_id", "sequence", name="uq_bids_auction_sequence"),
        CheckConstraint("amount > 0 AND max_amount >= amount", name="amounts"),
        # "Auctions I bid on" (GET /api/auctions?bidder_id=) and a bidder's standing.
        Index("ix_bids_bidder_auction", "bidder_id", "auction_id", "amount"),
    )


class AuctionEvent(Base):
    __tablename__ = "auction_events"

    auction_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    sequence: Mapped[int] = mapped_column(BigInteger, nullable=False)
    type: Mapped[str] = mapped_column(String(32), nullable=False)
    # json, not jsonb: a replayed event is byte for byte the one sent live.
    data: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    created_at: Mapped[datetime] = _now_column()

    __table_args__ = (PrimaryKeyConstraint("auction_id", "sequence"),)


class SettlementAttempt(Base):
    __tablename__ = "settlement_attempts"

    payment_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    auction_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("auctions.id"), nullable=False
    )
    attempt: Mapped[int] = mapped_column(Integer, nullable=False)
    # The saga's round: 1, then one more for each retry support asked for (saga.py).
    round: Mapped[int] = mapped_column(Integer, nullable=False, default=1, server_default="1")
    bidder_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    payment_method_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    amount: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # charging | processing | succeeded | failed | abandoned | refunding
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    failure_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = _now_column()
    updated_at: Mapped[datetime] = _now_column()

    __table_args__ = (
        UniqueConstraint("auction_id", "attempt", name="uq_settlement_attempts_auction_attempt"),
    )


@dataclass(frozen=True, slots=True)
class AuctionSnapshot:
    """One auction row as read under its lock, without the long text: what the bid path
    and the stream need, cheaper than an ORM object on the hottest path."""

    id: uuid.UUID
    seller_id: uuid.UUID
    title: str
    currency: str
    starting_price: int
    min_increment: int
    reserve_price: int | None
    buy_now_price: int | None
    starts_at: datetime
    ends_at: datetime
    soft_close_seconds: int
    max_extensions: int | None
    extensions: int
    status: str
    status_reason: str | None
    current_price: int | None
    bid_count: int
    sequence: int
    leader_id: uuid.UUID | None
    leader_max: int | None
    second_max: int | None
    leader_payment_method_id: uuid.UUID | None
    winner_id: uuid.UUID | None
    final_price: int | None
    payment_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, auction: Auction) -> AuctionSnapshot:
        return cls(**{name: getattr(auction, name) for name in SNAPSHOT_FIELDS})


SNAPSHOT_FIELDS: tuple[str, ...] = tuple(field.name for field in fields(AuctionSnapshot))
