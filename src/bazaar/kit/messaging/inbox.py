"""The inbox: ids of messages a consumer has handled, written with the effect.

A consumer claims a message id in the same transaction as the handler's effect. A
redelivered message finds its id taken and is skipped, so at-least-once delivery
becomes exactly-once effect.
"""

from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.kit.tables import inbox


async def claim(session: AsyncSession, consumer: str, message_id: str) -> bool:
    """Record that ``consumer`` handles ``message_id``; False if it already did."""
    result = await session.execute(
        insert(inbox)
        .values(consumer=consumer, message_id=message_id)
        .on_conflict_do_nothing()
        .returning(inbox.c.message_id)
    )
    return result.first() is not None
