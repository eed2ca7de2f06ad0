"""The inbox: ids of messages a consumer has handled, written with the effect.

A consumer claims a message id in the same transaction as the handler's effect. A
redelivered message finds its id taken and is skipped, so at-least-once delivery
becomes exactly-once effect.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import String, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

# Statements made once: every message handled alone (each catalog stock command, a
# retry) claims its id, and building an insert construct per message cost more than
# the round trip's own Python.
_CLAIM = text(
    "INSERT INTO inbox (consumer, message_id) VALUES (:consumer, :message_id) "
    "ON CONFLICT DO NOTHING RETURNING message_id"
)
_CLAIM_MANY = text(
    "INSERT INTO inbox (consumer, message_id) SELECT :consumer, unnest(:message_ids) "
    "ON CONFLICT DO NOTHING RETURNING message_id"
).bindparams(bindparam("message_ids", type_=ARRAY(String)))


async def claim(session: AsyncSession, consumer: str, message_id: str) -> bool:
    """Record that ``consumer`` handles ``message_id``; False if it already did."""
    result = await session.execute(_CLAIM, {"consumer": consumer, "message_id": message_id})
    return result.first() is not None


async def claim_many(session: AsyncSession, consumer: str, message_ids: Sequence[str]) -> set[str]:
    """Record that ``consumer`` handles every one of ``message_ids``, in one statement; the
    ids it had not handled before (an id repeated in ``message_ids`` counts once).

    A concurrent transaction claiming one of the ids (another replica after a rebalance)
    makes this one wait on the primary key until it ends, then finds the id taken.
    """
    if not message_ids:
        return set()
    result = await session.execute(
        _CLAIM_MANY, {"consumer": consumer, "message_ids": list(message_ids)}
    )
    return {str(row[0]) for row in result}
