"""The transactional outbox: a message is a row committed with the change it announces.

``publish`` only inserts into the ``outbox`` table through the caller's session, so
nothing is sent that was not committed and nothing committed is lost; the relay
(:mod:`bazaar.kit.messaging.relay`) moves the rows to Kafka. ``pg_notify`` in the same
transaction wakes the relay at commit, so a message leaves within milliseconds
without the relay polling in a tight loop.
"""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.contracts.base import Message
from bazaar.kit.messaging.envelope import Envelope, new_envelope
from bazaar.kit.tables import outbox

OUTBOX_CHANNEL = "bazaar_outbox"


async def publish(session: AsyncSession, topic: str, envelope: Envelope, key: str | None) -> None:
    """Add ``envelope`` to the outbox in the caller's transaction, for ``topic`` keyed by ``key``.

    ``topic`` is the contract's name (``bazaar.orders``); the relay adds the deployment's
    prefix. ``key`` is the entity's id, so one entity's messages keep their order.
    """
    await session.execute(
        insert(outbox).values(
            message_id=envelope.id,
            topic=topic,
            key=key,
            type=envelope.type,
            payload=envelope.to_bytes(),
        )
    )
    await session.execute(text(f"NOTIFY {OUTBOX_CHANNEL}"))


async def publish_message(
    session: AsyncSession,
    message: Message,
    *,
    source: str,
    key: str,
    correlation_id: str | None = None,
    user_id: str | UUID | None = None,
) -> Envelope:
    """Put a contract message (event or command) in the outbox; returns its envelope."""
    envelope = new_envelope(
        source=source,
        type=message.TYPE,
        subject=key,
        data=message,
        correlation_id=correlation_id,
        user_id=user_id,
        dataschema=message.dataschema(),
    )
    await publish(session, message.TOPIC, envelope, key)
    return envelope
