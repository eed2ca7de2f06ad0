"""The support service's composition root.

Besides the HTTP API it runs, per replica: the outbox relay (support's own events), the
history ingester (every topic, consumer group ``support``), the action worker (with
support's client-credentials token for the gateway) and the problems gauge.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from fastapi import FastAPI
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bazaar.kit.config import PlatformSettings
from bazaar.kit.db import transaction
from bazaar.kit.gateway_client import GatewayClient
from bazaar.kit.http import create_service_app
from bazaar.kit.logging import get_logger
from bazaar.kit.runtime import service_runtime
from bazaar.support import api, problems, repository
from bazaar.support.actions import RetryPolicy
from bazaar.support.ingest import HistoryIngester
from bazaar.support.settings import SupportSettings
from bazaar.support.worker import ActionWorker

log = get_logger(__name__)

SERVICE = "support"


def create_app(
    settings: SupportSettings | None = None, platform: PlatformSettings | None = None
) -> FastAPI:
    settings = settings or SupportSettings()
    platform = platform or PlatformSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with service_runtime(
            app, service=SERVICE, settings=settings, platform=platform
        ) as runtime:
            app.state.support_settings = settings
            runtime.start_outbox_relay()
            ingester = HistoryIngester(
                sessions=runtime.sessions,
                platform=platform,
                group=settings.consumer_group,
                batch_size=settings.ingest_batch_size,
                poll_ms=settings.ingest_poll_ms,
            )
            app.state.history_ingester = ingester
            runtime.start_background("history", ingester.run())
            runtime.start_background(
                "problems-gauge", _keep_counting_problems(runtime.sessions, settings)
            )
            if settings.client_id:
                gateway = GatewayClient(
                    platform.gateway_url,
                    settings.client_id,
                    settings.client_secret.get_secret_value(),
                    timeout_seconds=settings.gateway_timeout_seconds,
                )
                worker = ActionWorker(
                    sessions=runtime.sessions,
                    gateway=gateway,
                    retry=RetryPolicy(settings.action_attempts, settings.action_retry_seconds),
                    poll_seconds=settings.action_poll_seconds,
                )
                app.state.action_worker = worker
                runtime.start_background("actions", _work(worker, gateway))
            else:
                log.warning(
                    "support_actions_not_carried_out",
                    reason="no client credentials (BAZAAR_SUPPORT_CLIENT_ID): actions stay pending",
                )
            yield

    return create_service_app(
        SERVICE,
        title="Bazaar support",
        description="The history of every operation, what needs a person, corrective actions.",
        routers=[api.router],
        lifespan=lifespan,
    )


async def _work(worker: ActionWorker, gateway: GatewayClient) -> None:
    try:
        await worker.run()
    finally:
        await gateway.close()


async def _keep_counting_problems(
    sessions: async_sessionmaker[AsyncSession], settings: SupportSettings
) -> None:
    """Keep ``bazaar_support_problems`` current for the alert on stuck sagas."""
    while True:
        try:
            async with transaction(sessions) as session:
                counts = await repository.count_problems(
                    session, problems.cutoffs(settings, datetime.now(UTC))
                )
            problems.publish_counts(counts)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("problems_count_failed", error=repr(exc))
        await asyncio.sleep(settings.problems_refresh_seconds)
