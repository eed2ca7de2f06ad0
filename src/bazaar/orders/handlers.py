"""The orders service's message handlers: the saga's answers from catalog and payments.

One table says which message means what to the saga (:data:`READERS`: message type →
reader giving the order and the trigger); :func:`handlers` binds it to the saga's
policy for the consumer. ``PaymentProcessing`` is deliberately absent: it is not an
outcome, and the charge step's deadline already waits long enough for the real one.
Payment outcomes of auctions share the topic and are skipped.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.contracts import catalog, payments
from bazaar.kit.messaging.consumer import Handler
from bazaar.kit.messaging.envelope import Envelope
from bazaar.orders import service
from bazaar.orders.saga import Trigger, payment_failure_trigger
from bazaar.orders.service import SagaPolicy


@dataclass(frozen=True, slots=True)
class SagaAnswer:
    """An answer to the saga: payment answers name the order (and the payment asked for);
    stock answers name the reservation of the saga's current round."""

    trigger: Trigger
    order_id: uuid.UUID | None = None
    payment_id: uuid.UUID | None = None
    reservation_id: uuid.UUID | None = None


Reader = Callable[[Envelope], SagaAnswer | None]
StockAnswer = (
    catalog.StockReserved
    | catalog.StockReservationRefused
    | catalog.StockCommitted
    | catalog.StockReleased
)


def _stock(trigger: Trigger, message: type[StockAnswer]) -> Reader:
    def read(envelope: Envelope) -> SagaAnswer:
        answer = message.model_validate(envelope.data)
        return SagaAnswer(trigger, reservation_id=answer.reservation_id)

    return read


def _payment(
    message: type[payments.PaymentOutcome], trigger: Callable[[payments.PaymentOutcome], Trigger]
) -> Reader:
    def read(envelope: Envelope) -> SagaAnswer | None:
        outcome = message.model_validate(envelope.data)
        if outcome.reference_type != "order":
            return None
        return SagaAnswer(trigger(outcome), outcome.reference_id, outcome.payment_id)

    return read


def _failed(outcome: payments.PaymentOutcome) -> Trigger:
    assert isinstance(outcome, payments.PaymentFailed)
    return payment_failure_trigger(outcome.failure_code)


READERS: Mapping[str, Reader] = {
    catalog.StockReserved.TYPE: _stock(Trigger.STOCK_RESERVED, catalog.StockReserved),
    catalog.StockReservationRefused.TYPE: _stock(
        Trigger.STOCK_REFUSED, catalog.StockReservationRefused
    ),
    catalog.StockCommitted.TYPE: _stock(Trigger.STOCK_COMMITTED, catalog.StockCommitted),
    catalog.StockReleased.TYPE: _stock(Trigger.STOCK_RELEASED, catalog.StockReleased),
    payments.PaymentSucceeded.TYPE: _payment(
        payments.PaymentSucceeded, lambda _: Trigger.PAYMENT_SUCCEEDED
    ),
    payments.PaymentFailed.TYPE: _payment(payments.PaymentFailed, _failed),
    payments.PaymentRefunded.TYPE: _payment(
        payments.PaymentRefunded, lambda _: Trigger.PAYMENT_RETURNED
    ),
    payments.PaymentCancelled.TYPE: _payment(
        payments.PaymentCancelled, lambda _: Trigger.PAYMENT_RETURNED
    ),
}


def handlers(policy: SagaPolicy) -> dict[str, Handler]:
    """The consumer's table: every message type the saga listens to → its handler."""

    def handler_for(read: Reader) -> Handler:
        async def handle(session: AsyncSession, envelope: Envelope) -> None:
            answer = read(envelope)
            if answer is not None:
                await service.advance_saga(
                    session,
                    answer.trigger,
                    order_id=answer.order_id,
                    reservation_id=answer.reservation_id,
                    payment_id=answer.payment_id,
                    policy=policy,
                    now=datetime.now(UTC),
                )

        return handle

    return {message_type: handler_for(read) for message_type, read in READERS.items()}
