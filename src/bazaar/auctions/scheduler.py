"""The loop every replica runs: open auctions at ``starts_at``, close them at ``ends_at``,
chase settlement steps past their deadline.

Replicas do not elect a leader: each claims due rows with ``FOR UPDATE SKIP LOCKED``, so
they share the work, and a replica that dies mid-transaction leaves its rows to the
others once PostgreSQL ends its session. The state change itself (open → closing, under
the row lock) is what makes each close happen once.

A popular auction's row is locked by bids most of the time, and bids that arrive after
its end still take the lock to be refused, so SKIP LOCKED may keep passing it over. An
auction still open ``overdue_grace_seconds`` after its end is therefore waited for.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bazaar.auctions import repository, service
from bazaar.auctions.saga import SettlementPolicy
from bazaar.kit.db import transaction
from bazaar.kit.logging import get_logger

log = get_logger(__name__)


class Scheduler:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        policy: SettlementPolicy,
        interval_seconds: float,
        overdue_grace_seconds: float,
        batch: int = 100,
    ) -> None:
        self._sessions = sessions
        self._policy = policy
        self._interval = interval_seconds
        self._grace = timedelta(seconds=overdue_grace_seconds)
        self._batch = batch

    async def run(self) -> None:
        while True:
            try:
                handled = await self.tick()
            except (SQLAlchemyError, OSError) as exc:
                log.warning("auction_scheduler_failed", error=repr(exc))
                handled = 0
            # A full batch means more may be due: go again at once.
            if handled < self._batch:
                await asyncio.sleep(self._interval)

    async def tick(self) -> int:
        """One pass: a look at what is due, then each due step in a transaction of its
        own. Returns the busiest step's count."""
        async with self._sessions() as session:
            due = await repository.due(session, service.utcnow())
        opened = closed = chased = 0
        if due.to_open:
            async with transaction(self._sessions) as session:
                opened = await service.open_due(session, now=service.utcnow(), limit=self._batch)
        if due.to_close:
            async with transaction(self._sessions) as session:
                closed = await service.close_due(
                    session, now=service.utcnow(), policy=self._policy, limit=self._batch
                )
            async with transaction(self._sessions) as session:
                overdue = await service.close_due(
                    session,
                    now=service.utcnow(),
                    policy=self._policy,
                    limit=10,
                    overdue_by=self._grace,
                )
            if overdue:
                log.info("auctions_closed_overdue", count=overdue)
        if due.settlements:
            async with transaction(self._sessions) as session:
                chased = await service.chase_settlements(
                    session, now=service.utcnow(), policy=self._policy, limit=self._batch
                )
        return max(opened, closed, chased)
