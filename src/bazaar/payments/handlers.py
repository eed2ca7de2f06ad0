"""The payment commands this service consumes (``bazaar.payments.commands``), as one table.

Each handler runs in the consumer's transaction together with the inbox claim, so a
redelivered envelope changes nothing; a command sent again under a new envelope
finds the payment its first delivery recorded. Handlers never call the provider:
they record what is asked, and the processor charges after the commit (this
replica's, handed the new payment's claim in the same transaction, or any replica's,
woken by ``NOTIFY``).
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.contracts.payments import COMMANDS_TOPIC, CancelPayment, ChargePayment
from bazaar.kit.messaging.consumer import Handler
from bazaar.kit.messaging.envelope import Envelope
from bazaar.payments.processor import PaymentProcessor

CONSUMER_NAME = "payments"
TOPICS = (COMMANDS_TOPIC,)


def command_handlers(processor: PaymentProcessor) -> Mapping[str, Handler]:
    """The table, for a consumer of this replica: its processor sends the first charges
    that the commands' transactions claimed for it."""

    async def charge_payment(session: AsyncSession, envelope: Envelope) -> None:
        command = ChargePayment.model_validate(envelope.data)
        await processor.request_charge(session, command, envelope.correlationid)

    async def cancel_payment(session: AsyncSession, envelope: Envelope) -> None:
        command = CancelPayment.model_validate(envelope.data)
        await processor.request_cancel(session, command, envelope.correlationid)

    return {
        ChargePayment.TYPE: charge_payment,
        CancelPayment.TYPE: cancel_payment,
    }
