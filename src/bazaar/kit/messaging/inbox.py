"""The inbox: ids of messages a consumer has handled, written with the effect.

A consumer claims a message id in the same transaction as the handler's effect. A
redelivered message finds its id taken and is skipped, so at-least-once delivery
becomes exactly-once effect.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import String, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.kit.tables import inbox

_CLAIM_MANY = text(
    "INSERT INTO inbox (consumer, message_id) SELECT :consumer, unnest(:message_ids) "
    "ON CONFLICT DO NOTHING RETURNING message_id"
).bindparams(bindparam("message_ids", type_=ARRAY(String)))


async def claim(session: AsyncSession, consumer: str, message_id: str) -> bool:
    """Record that ``consumer`` handles ``message_id``; False if it already did."""
    result = await session.execute(
        insert(inbox)
        .values(consumer=consumer, message_id=message_id)
        .on_conflict_do_nothing()
        .returning(inbox.c.message_id)
    )
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
