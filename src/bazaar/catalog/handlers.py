"""The catalog's message handlers: stock commands from the order saga, by message type.

Each handler runs inside the consumer's transaction (with the inbox claim), parses
its command and calls :mod:`bazaar.catalog.service`; the answer goes out through the
outbox in the same transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.catalog import service
from bazaar.contracts.catalog import CommitStock, ReleaseStock, ReserveStock
from bazaar.kit.messaging.consumer import Handler
from bazaar.kit.messaging.envelope import Envelope


async def on_reserve_stock(session: AsyncSession, envelope: Envelope) -> None:
    await service.reserve_stock(
        session,
        ReserveStock.model_validate(envelope.data),
        now=datetime.now(UTC),
        correlation_id=envelope.correlationid,
        user_id=envelope.userid,
    )


async def on_commit_stock(session: AsyncSession, envelope: Envelope) -> None:
    await service.commit_stock(
        session,
        CommitStock.model_validate(envelope.data),
        now=datetime.now(UTC),
        correlation_id=envelope.correlationid,
        user_id=envelope.userid,
    )


async def on_release_stock(session: AsyncSession, envelope: Envelope) -> None:
    await service.release_stock(
        session,
        ReleaseStock.model_validate(envelope.data),
        now=datetime.now(UTC),
        correlation_id=envelope.correlationid,
        user_id=envelope.userid,
    )


HANDLERS: dict[str, Handler] = {
    ReserveStock.TYPE: on_reserve_stock,
    CommitStock.TYPE: on_commit_stock,
    ReleaseStock.TYPE: on_release_stock,
}
