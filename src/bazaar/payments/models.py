"""Payments tables. Never returned from a route: ``schemas.py`` shapes the answers.

No table holds a card number or a CVC: a method is the provider's token plus what a
person needs to recognise the card (brand, last four digits, expiry).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bazaar.kit.db import new_metadata

metadata = new_metadata()


class PaymentStatus(StrEnum):
    """API.md: ``pending`` → ``processing`` → ``succeeded`` | ``failed``; ``succeeded`` →
    ``refunded``."""

    PENDING = "pending"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REFUNDED = "refunded"


class FailureCode(StrEnum):
    CARD_DECLINED = "card_declined"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    EXPIRED_CARD = "expired_card"
    PROCESSING_ERROR = "processing_error"
    PAYMENT_METHOD_INVALID = "payment_method_invalid"
    # Voided by a cancel before any charge was made.
    CANCELLED = "cancelled"
    # A command the provider could never accept (amount out of range, bad currency).
    INVALID_REQUEST = "invalid_request"


class AttemptKind(StrEnum):
    CHARGE = "charge"
    LOOKUP = "lookup"
    REFUND = "refund"


class Account(StrEnum):
    """Ledger accounts, from the platform's point of view.

    ``provider_clearing`` (an asset): money the provider collected for us and owes us.
    ``merchant_payable`` (a liability): money we owe the seller (or ourselves, for fees).
    A captured charge debits the first and credits the second; a refund reverses both.
    """

    PROVIDER_CLEARING = "provider_clearing"
    MERCHANT_PAYABLE = "merchant_payable"


class EntryKind(StrEnum):
    CHARGE = "charge"
    REFUND = "refund"


class Base(DeclarativeBase):
    metadata = metadata


class PaymentMethod(Base):
    __tablename__ = "payment_methods"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    provider_token: Mapped[str] = mapped_column(String(255), nullable=False)
    brand: Mapped[str] = mapped_column(String(32), nullable=False)
    last4: Mapped[str] = mapped_column(String(4), nullable=False)
    exp_month: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    exp_year: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    # Soft delete: payments made with the method keep pointing at it.
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    __table_args__ = (
        CheckConstraint("exp_month BETWEEN 1 AND 12", name="exp_month"),
        Index("ix_payment_methods_user_created", "user_id", "created_at", "id"),
    )


class Payment(Base):
    __tablename__ = "payments"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    amount: Mapped[int] = mapped_column(BigInteger, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    failure_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    reference_type: Mapped[str] = mapped_column(String(16), nullable=False)
    reference_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    # No foreign key: a ChargePayment naming an unknown method is recorded too (as
    # ``failed``, ``payment_method_invalid``), with the id it named.
    payment_method_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    provider_charge_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    refunded_amount: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    cancel_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # The saga's id from the command (or the reference, for HTTP), carried into every
    # outcome event, and the cancel's own, carried into the cancel's outcome.
    correlation_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    cancel_correlation_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # When the processor should next look at this payment; NULL: nothing left to do.
    next_check_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # A replica's claim: nobody else works on the payment until it is released or expires.
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    claim_token: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True), nullable=True)
    # Rounds that sent the charge to the provider (each with the same idempotency key).
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # Rounds in a row that ended without a final answer: the wait before the next doubles.
    rounds: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # PaymentProcessing was published (once, when the outcome first became unknown).
    processing_announced: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )

    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(
            "status IN ('pending', 'processing', 'succeeded', 'failed', 'refunded')",
            name="status",
        ),
        CheckConstraint("reference_type IN ('order', 'auction')", name="reference_type"),
        CheckConstraint("refunded_amount BETWEEN 0 AND amount", name="refunded_amount"),
        Index("ix_payments_user_created", "user_id", "created_at", "id"),
        Index("ix_payments_created", "created_at", "id"),
        Index("ix_payments_reference", "reference_type", "reference_id"),
        Index(
            "ix_payments_next_check_at",
            "next_check_at",
            postgresql_where=text("next_check_at IS NOT NULL"),
        ),
    )


class PaymentAttempt(Base):
    """One call to the provider: what was asked, under which key, and what came back."""

    __tablename__ = "payment_attempts"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    payment_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("payments.id"), nullable=False, index=True
    )
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    idempotency_key: Mapped[str] = mapped_column(String(255), nullable=False)
    # succeeded, failed, not_found, transient_error, unknown, refused
    outcome: Mapped[str] = mapped_column(String(32), nullable=False)
    http_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    duration_ms: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class LedgerEntry(Base):
    """One line of a balanced journal entry: the lines sharing ``entry_id`` sum to zero."""

    __tablename__ = "ledger_entries"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    entry_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False, index=True)
    payment_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("payments.id"), nullable=False, index=True
    )
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    account: Mapped[str] = mapped_column(String(32), nullable=False)
    debit: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    credit: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )

    __table_args__ = (
        CheckConstraint(
            "(debit > 0 AND credit = 0) OR (credit > 0 AND debit = 0)", name="one_side"
        ),
        # A payment's charge (or refund) is posted once, however often it is recorded.
        UniqueConstraint("payment_id", "kind", "account", name="uq_ledger_entries_posting"),
    )


class EarlyCancellation(Base):
    """A CancelPayment that arrived before its ChargePayment: the charge must never run."""

    __tablename__ = "early_cancellations"

    payment_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    reason: Mapped[str] = mapped_column(String(200), nullable=False)
    correlation_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
