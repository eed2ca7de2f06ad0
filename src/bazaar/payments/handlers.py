"""The payment commands this service consumes (``bazaar.payments.commands``), as one table.

Each handler runs in the consumer's transaction together with the inbox claim, so a
redelivered envelope changes nothing; a command sent again under a new envelope
finds the payment its first delivery recorded. Handlers never call the provider:
they record what is asked and wake the processor, which charges after commit.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.contracts.payments import COMMANDS_TOPIC, CancelPayment, ChargePayment
from bazaar.kit.messaging.consumer import Handler
from bazaar.kit.messaging.envelope import Envelope
from bazaar.payments import service

CONSUMER_NAME = "payments"
TOPICS = (COMMANDS_TOPIC,)


async def charge_payment(session: AsyncSession, envelope: Envelope) -> None:
    command = ChargePayment.model_validate(envelope.data)
    await service.request_charge(session, command, envelope.correlationid)


async def cancel_payment(session: AsyncSession, envelope: Envelope) -> None:
    command = CancelPayment.model_validate(envelope.data)
    await service.request_cancel(
        session, command.payment_id, command.reason, envelope.correlationid
    )


HANDLERS: Mapping[str, Handler] = {
    ChargePayment.TYPE: charge_payment,
    CancelPayment.TYPE: cancel_payment,
}
