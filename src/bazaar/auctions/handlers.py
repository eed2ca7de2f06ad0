"""The auctions' message handlers: payment outcomes that move the settlement saga.

Consumed from ``bazaar.payments`` in group ``auctions``. Each handler runs inside the
consumer's transaction (with the inbox claim) and calls
:func:`bazaar.auctions.service.record_payment_outcome`; outcomes of payments that are
not an auction's (orders') are ignored there.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.auctions import service
from bazaar.auctions.saga import SettlementPolicy, Trigger
from bazaar.contracts.payments import PaymentFailed, PaymentProcessing, PaymentSucceeded
from bazaar.kit.messaging.consumer import Handler
from bazaar.kit.messaging.envelope import Envelope


def payment_handlers(policy: SettlementPolicy) -> dict[str, Handler]:
    """The table: message type -> handler, for the saga run with ``policy``."""

    async def on_payment_succeeded(session: AsyncSession, envelope: Envelope) -> None:
        outcome = PaymentSucceeded.model_validate(envelope.data)
        await service.record_payment_outcome(session, outcome, Trigger.SUCCEEDED, policy=policy)

    async def on_payment_failed(session: AsyncSession, envelope: Envelope) -> None:
        outcome = PaymentFailed.model_validate(envelope.data)
        await service.record_payment_outcome(
            session, outcome, Trigger.FAILED, policy=policy, failure_code=outcome.failure_code
        )

    async def on_payment_processing(session: AsyncSession, envelope: Envelope) -> None:
        outcome = PaymentProcessing.model_validate(envelope.data)
        await service.record_payment_outcome(session, outcome, Trigger.PROCESSING, policy=policy)

    return {
        PaymentSucceeded.TYPE: on_payment_succeeded,
        PaymentFailed.TYPE: on_payment_failed,
        PaymentProcessing.TYPE: on_payment_processing,
    }
