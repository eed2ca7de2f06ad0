"""The orders service's composition root.

Besides the HTTP API it runs, per replica: the outbox relay, the consumer of the
saga's answers (``bazaar.catalog`` and ``bazaar.payments``, group ``orders``) and the
saga timer, which re-sends a step's command past its deadline. Replicas share the
work: the consumer group splits the partitions, and the timer claims due sagas with
``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from fastapi import FastAPI
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bazaar.contracts import catalog, payments
from bazaar.kit.config import PlatformSettings
from bazaar.kit.db import transaction
from bazaar.kit.gateway_client import GatewayClient
from bazaar.kit.http import create_service_app
from bazaar.kit.logging import get_logger
from bazaar.kit.messaging.consumer import MessageConsumer
from bazaar.kit.runtime import service_runtime
from bazaar.orders import api, service
from bazaar.orders.handlers import handlers
from bazaar.orders.lookups import Lookups
from bazaar.orders.service import SagaPolicy
from bazaar.orders.settings import OrdersSettings

log = get_logger(__name__)

SERVICE = "orders"


def create_app(
    settings: OrdersSettings | None = None, platform: PlatformSettings | None = None
) -> FastAPI:
    settings = settings or OrdersSettings()
    platform = platform or PlatformSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with service_runtime(
            app, service=SERVICE, settings=settings, platform=platform
        ) as runtime:
            policy = SagaPolicy(settings.saga_timings(), settings.reservation_hold_seconds)
            gateway = GatewayClient(
                platform.gateway_url,
                settings.client_id,
                settings.client_secret.get_secret_value(),
                timeout_seconds=settings.gateway_timeout_seconds,
            )
            app.state.saga_policy = policy
            app.state.lookups = Lookups(
                gateway, method_cache_seconds=settings.payment_method_cache_seconds
            )
            runtime.start_outbox_relay()
            consumer = MessageConsumer(
                name=SERVICE,
                topics=[catalog.TOPIC, payments.TOPIC],
                handlers=handlers(policy),
                sessions=runtime.sessions,
                settings=platform,
                source=service.SOURCE,
                # An answer locks its own order only.
                concurrent_partitions=True,
                accepts=lambda envelope: payments.concerns(envelope.data, "order"),
            )
            app.state.saga_consumer = consumer
            runtime.start_background("saga-answers", consumer.run())
            runtime.start_background(
                "saga-timer",
                _keep_driving_deadlines(
                    runtime.sessions,
                    policy,
                    settings.saga_timer_interval_seconds,
                    settings.saga_timer_batch,
                ),
            )
            try:
                yield
            finally:
                await gateway.close()

    return create_service_app(
        SERVICE,
        title="Bazaar orders",
        description="Orders of catalog items, carried out by the order saga.",
        routers=[api.router],
        lifespan=lifespan,
    )


async def _keep_driving_deadlines(
    sessions: async_sessionmaker[AsyncSession], policy: SagaPolicy, interval: float, batch: int
) -> None:
    """The saga timer: drive every saga past its deadline, a batch per transaction."""
    while True:
        try:
            async with transaction(sessions) as session:
                driven = await service.drive_due_sagas(
                    session, policy=policy, now=datetime.now(UTC), limit=batch
                )
        except (SQLAlchemyError, OSError) as exc:
            log.warning("saga_timer_failed", error=repr(exc))
            driven = 0
        if driven < batch:
            await asyncio.sleep(interval)
