"""Order events on ``bazaar.orders`` (the order saga's milestones, for support and others)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from bazaar.contracts.base import Message

TOPIC = "bazaar.orders"

CancelReason = Literal[
    "out_of_stock",
    "payment_declined",
    "payment_failed",
    "user_request",
    "support_action",
    "timeout",
]


class OrderLine(Message):
    TYPE = "bazaar.orders.order-line"
    TOPIC = TOPIC

    item_id: UUID
    title: str
    unit_price: int
    quantity: int
    seller_id: UUID | None = None


class OrderEvent(Message):
    TYPE = "bazaar.orders.order"
    TOPIC = TOPIC

    order_id: UUID
    user_id: UUID
    status: Literal["pending", "confirmed", "cancelling", "cancelled"]
    total: int
    currency: str
    occurred_at: datetime


class OrderCreated(OrderEvent):
    TYPE = "bazaar.orders.order.created"

    lines: list[OrderLine]
    payment_method_id: UUID


class OrderConfirmed(OrderEvent):
    """The order is paid and its stock held: sent once, with the ``CommitStock`` that
    makes the hold a sale (the catalog's ``StockCommitted`` follows, and ends the saga)."""

    TYPE = "bazaar.orders.order.confirmed"

    payment_id: UUID


class OrderCancellationRequested(OrderEvent):
    """A user or support asked to cancel; compensation (refund, restock) is under way."""

    TYPE = "bazaar.orders.order.cancellation_requested"

    requested_by: str
    reason: CancelReason


class OrderCancelled(OrderEvent):
    TYPE = "bazaar.orders.order.cancelled"

    reason: CancelReason
    payment_id: UUID | None = None


class OrderSagaStepTimedOut(OrderEvent):
    """A step passed its deadline and its command was sent again (attempt ``attempt``)."""

    TYPE = "bazaar.orders.saga.step_timed_out"

    step: str
    attempt: int


class OrderRetried(OrderEvent):
    """Support asked the saga to try again: ``restarted`` when a cancelled order started
    over (new reservation, new payment), else the pending step was sent again."""

    TYPE = "bazaar.orders.order.retried"

    requested_by: str
    restarted: bool
    step: str
