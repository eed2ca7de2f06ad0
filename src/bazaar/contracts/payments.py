"""Payments: commands on ``bazaar.payments.commands``, outcomes on ``bazaar.payments``.

Orders and auctions ask for money with :class:`ChargePayment` and get back exactly
one final outcome event per payment (:class:`PaymentSucceeded` or
:class:`PaymentFailed`). The caller chooses ``payment_id`` (a UUID it keeps in its saga
state), so a command sent again, or delivered twice, finds the payment it made and
never charges twice. :class:`CancelPayment` voids or refunds; its outcome is
:class:`PaymentRefunded` (money returned) or :class:`PaymentCancelled` (nothing had
been taken).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from bazaar.contracts.base import Message

TOPIC = "bazaar.payments"
COMMANDS_TOPIC = "bazaar.payments.commands"

ReferenceType = Literal["order", "auction"]


class ChargePayment(Message):
    TYPE = "bazaar.payments.command.charge"
    TOPIC = COMMANDS_TOPIC

    payment_id: UUID
    user_id: UUID
    payment_method_id: UUID
    amount: int
    currency: str
    reference_type: ReferenceType
    reference_id: UUID


class CancelPayment(Message):
    """Void a payment not yet taken, refund one that succeeded (in full)."""

    TYPE = "bazaar.payments.command.cancel"
    TOPIC = COMMANDS_TOPIC

    payment_id: UUID
    reason: str


class PaymentOutcome(Message):
    TYPE = "bazaar.payments.payment"
    TOPIC = TOPIC

    payment_id: UUID
    user_id: UUID
    amount: int
    currency: str
    reference_type: ReferenceType
    reference_id: UUID
    occurred_at: datetime


def concerns(data: Mapping[str, Any], reference_type: ReferenceType) -> bool:
    """Whether a message's ``data`` is not a payment outcome of another kind of reference:
    orders and auctions share the payment outcomes, and each passes over the other's
    before it spends a transaction on them."""
    return bool(data.get("reference_type", reference_type) == reference_type)


class PaymentProcessing(PaymentOutcome):
    """The provider was asked and has not (yet) given a final answer; not final."""

    TYPE = "bazaar.payments.payment.processing"


class PaymentSucceeded(PaymentOutcome):
    TYPE = "bazaar.payments.payment.succeeded"


class PaymentFailed(PaymentOutcome):
    """Final: no money was taken. ``failure_code``: ``card_declined``,
    ``insufficient_funds``, ``expired_card``, ``processing_error``, ``payment_method_invalid``."""

    TYPE = "bazaar.payments.payment.failed"

    failure_code: str


class PaymentRefunded(PaymentOutcome):
    TYPE = "bazaar.payments.payment.refunded"

    refunded_amount: int


class PaymentCancelled(PaymentOutcome):
    """A cancel found nothing to give back (the payment had failed or never reached the
    provider); final for the caller's compensation."""

    TYPE = "bazaar.payments.payment.cancelled"
