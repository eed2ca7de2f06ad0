"""The transactional outbox: a message is a row committed with the change it announces.

``publish`` only inserts into the ``outbox`` table through the caller's session, so
nothing is sent that was not committed and nothing committed is lost; the relay
(:mod:`bazaar.kit.messaging.relay`) moves the rows to Kafka. ``pg_notify`` in the same
transaction wakes the relay at commit, so a message leaves within milliseconds
without the relay polling in a tight loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from sqlalchemy import LargeBinary, String, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.contracts.base import Message
from bazaar.kit.messaging.envelope import Envelope, new_envelope

OUTBOX_CHANNEL = "bazaar_outbox"

# The row and the wake-up in one statement (one round trip); pg_notify is transactional
# like NOTIFY: delivered at commit, and once per transaction however many rows it adds.
_PUBLISH = text(
    "WITH added AS (INSERT INTO outbox (message_id, topic, key, type, payload) "
    "VALUES (:message_id, :topic, :key, :type, :payload) RETURNING 1) "
    "SELECT pg_notify(:channel, '') FROM added"
).bindparams(bindparam("payload", type_=LargeBinary), bindparam("channel", value=OUTBOX_CHANNEL))


# Several rows in one statement, in the order given (ids are drawn in that order, and the
# relay sends by id).
_PUBLISH_MANY = text(
    "WITH added AS (INSERT INTO outbox (message_id, topic, key, type, payload) "
    "SELECT message_id, topic, key, type, payload FROM unnest("
    ":message_ids, :topics, :keys, :types, :payloads"
    ") WITH ORDINALITY AS m(message_id, topic, key, type, payload, position) "
    "ORDER BY position RETURNING 1) "
    "SELECT pg_notify(:channel, '') FROM added LIMIT 1"
).bindparams(
    *(bindparam(name, type_=ARRAY(String)) for name in ("message_ids", "topics", "keys", "types")),
    bindparam("payloads", type_=ARRAY(LargeBinary)),
    bindparam("channel", value=OUTBOX_CHANNEL),
)


async def publish(session: AsyncSession, topic: str, envelope: Envelope, key: str | None) -> None:
    """Add ``envelope`` to the outbox in the caller's transaction, for ``topic`` keyed by ``key``.

    ``topic`` is the contract's name (``bazaar.orders``); the relay adds the deployment's
    prefix. ``key`` is the entity's id, so one entity's messages keep their order.
    """
    await session.execute(
        _PUBLISH,
        {
            "message_id": envelope.id,
            "topic": topic,
            "key": key,
            "type": envelope.type,
            "payload": envelope.to_bytes(),
        },
    )


async def publish_all(
    session: AsyncSession, messages: Sequence[tuple[str, Envelope, str | None]]
) -> None:
    """Add ``(topic, envelope, key)`` rows to the outbox in the caller's transaction, in
    order, with one statement (a round trip per message saved where a move sends several)."""
    if len(messages) <= 1:
        for topic, envelope, key in messages:
            await publish(session, topic, envelope, key)
        return
    await session.execute(
        _PUBLISH_MANY,
        {
            "message_ids": [envelope.id for _, envelope, _ in messages],
            "topics": [topic for topic, _, _ in messages],
            "keys": [key for _, _, key in messages],
            "types": [envelope.type for _, envelope, _ in messages],
            "payloads": [envelope.to_bytes() for _, envelope, _ in messages],
        },
    )


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
    envelope = message_envelope(
        message, source=source, key=key, correlation_id=correlation_id, user_id=user_id
    )
    await publish(session, message.TOPIC, envelope, key)
    return envelope


def message_envelope(
    message: Message,
    *,
    source: str,
    key: str,
    correlation_id: str | None = None,
    user_id: str | UUID | None = None,
) -> Envelope:
    """The envelope a contract message travels in, keyed (and subject) by its entity."""
    return new_envelope(
        source=source,
        type=message.TYPE,
        subject=key,
        data=message,
        correlation_id=correlation_id,
        user_id=user_id,
        dataschema=message.dataschema(),
    )
