"""The catalog service's composition root.

Besides the HTTP API it runs, per replica: the outbox relay, the consumer of stock
commands (``bazaar.catalog.commands``, group ``catalog``) and the reaper that returns
the units of expired holds.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from fastapi import FastAPI
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bazaar.catalog import api, service
from bazaar.catalog.handlers import HANDLERS
from bazaar.catalog.settings import CatalogSettings
from bazaar.contracts.catalog import COMMANDS_TOPIC
from bazaar.kit.config import PlatformSettings
from bazaar.kit.db import transaction
from bazaar.kit.http import create_service_app
from bazaar.kit.logging import get_logger
from bazaar.kit.messaging.consumer import MessageConsumer
from bazaar.kit.runtime import service_runtime

log = get_logger(__name__)

SERVICE = "catalog"


def create_app(
    settings: CatalogSettings | None = None, platform: PlatformSettings | None = None
) -> FastAPI:
    settings = settings or CatalogSettings()
    platform = platform or PlatformSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with service_runtime(
            app, service=SERVICE, settings=settings, platform=platform
        ) as runtime:
            runtime.start_outbox_relay()
            consumer = MessageConsumer(
                name=SERVICE,
                topics=[COMMANDS_TOPIC],
                handlers=HANDLERS,
                sessions=runtime.sessions,
                settings=platform,
                source=service.SOURCE,
                # Stock commands lock item rows shared by every order of the item: each in
                # a transaction of its own (items locked in id order, never deadlocking),
                # the partitions side by side.
                max_batch_messages=1,
                concurrent_partitions=True,
            )
            app.state.stock_consumer = consumer
            runtime.start_background("stock-commands", consumer.run())
            runtime.start_background(
                "stock-reaper",
                _keep_reaping(runtime.sessions, settings.reservation_reaper_interval_seconds),
            )
            yield

    return create_service_app(
        SERVICE,
        title="Bazaar catalog",
        description="Goods and services, their prices and stock.",
        routers=[api.router],
        lifespan=lifespan,
    )


async def _keep_reaping(sessions: async_sessionmaker[AsyncSession], interval: float) -> None:
    """Return the units of expired holds, a batch per transaction, until none are left."""
    while True:
        try:
            async with transaction(sessions) as session:
                reaped = await service.reap_expired_holds(session, now=datetime.now(UTC))
        except (SQLAlchemyError, OSError) as exc:
            log.warning("stock_reaper_failed", error=repr(exc))
            reaped = 0
        if not reaped:
            await asyncio.sleep(interval)
