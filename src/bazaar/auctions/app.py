"""The auctions service's composition root.

Besides the HTTP API it runs, per replica: the outbox relay; the consumer of payment
outcomes (``bazaar.payments``, group ``auctions``) that moves the settlement saga; the
scheduler that opens, closes and chases settlements; and the stream hub, one LISTEN
connection that feeds the Server-Sent Events of the clients connected here.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import asyncpg
from fastapi import FastAPI

from bazaar.auctions import api, repository, service
from bazaar.auctions.bidding import BidDesk
from bazaar.auctions.handlers import payment_handlers
from bazaar.auctions.saga import SettlementPolicy
from bazaar.auctions.scheduler import Scheduler
from bazaar.auctions.settings import AuctionsSettings
from bazaar.auctions.stream import StreamHub
from bazaar.contracts import payments
from bazaar.kit.config import PlatformSettings
from bazaar.kit.db import asyncpg_dsn
from bazaar.kit.gateway_client import GatewayClient
from bazaar.kit.http import create_service_app
from bazaar.kit.messaging.consumer import MessageConsumer
from bazaar.kit.payment_methods import (
    GatewayPaymentMethods,
    PaymentMethodCheck,
    PaymentMethodDirectory,
)
from bazaar.kit.runtime import service_runtime

SERVICE = "auctions"
# How long a fetch of payment outcomes may wait at the broker (see the consumer below).
SETTLEMENT_FETCH_MAX_WAIT_MS = 100


def create_app(
    settings: AuctionsSettings | None = None,
    platform: PlatformSettings | None = None,
    *,
    payment_methods: PaymentMethodDirectory | None = None,
) -> FastAPI:
    """The app; ``payment_methods`` replaces the gateway as the directory bids are checked
    against (with ``verify_payment_methods`` off, nothing is checked)."""
    settings = settings or AuctionsSettings()
    platform = platform or PlatformSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with service_runtime(
            app, service=SERVICE, settings=settings, platform=platform
        ) as runtime:
            runtime.start_outbox_relay()
            policy = SettlementPolicy(
                charge_timeout=timedelta(seconds=settings.settlement_charge_timeout_seconds),
                processing_timeout=timedelta(
                    seconds=settings.settlement_processing_timeout_seconds
                ),
                max_sends=settings.settlement_max_sends,
            )
            gateway: GatewayClient | None = None
            directory = payment_methods
            if directory is None and settings.verify_payment_methods:
                gateway = GatewayClient(
                    settings.payment_methods_url or platform.gateway_url,
                    settings.client_id,
                    settings.client_secret.get_secret_value(),
                )
                directory = GatewayPaymentMethods(gateway)
            if not settings.verify_payment_methods:
                directory = None
            dsn = asyncpg_dsn(settings.database_url.get_secret_value())
            bid_connections = await asyncpg.create_pool(
                dsn, min_size=1, max_size=settings.bid_pool_size, reset=repository.no_reset
            )
            bids = BidDesk(bid_connections)
            hub = StreamHub(dsn)
            app.state.auctions = api.AuctionsContext(
                sessions=runtime.sessions,
                bids=bids,
                policy=policy,
                payment_methods=PaymentMethodCheck(
                    directory, ttl_seconds=settings.payment_method_cache_seconds
                ),
                hub=hub,
                heartbeat_seconds=settings.stream_heartbeat_seconds,
            )
            app.state.stream_hub = hub
            consumer = MessageConsumer(
                name=SERVICE,
                topics=[payments.TOPIC],
                handlers=payment_handlers(policy),
                sessions=runtime.sessions,
                settings=platform,
                source=service.SOURCE,
                accepts=lambda envelope: payments.concerns(envelope.data, "auction"),
                # A settlement waits on no one, so this consumer need not poll the broker
                # every 10 ms (a fetch a time for the embedded broker, on every replica).
                fetch_max_wait_ms=max(
                    SETTLEMENT_FETCH_MAX_WAIT_MS, platform.kafka_fetch_max_wait_ms
                ),
            )
            app.state.payments_consumer = consumer
            runtime.start_background("stream-hub", hub.run())
            runtime.start_background("payment-outcomes", consumer.run())
            runtime.start_background(
                "scheduler",
                Scheduler(
                    runtime.sessions,
                    policy=policy,
                    interval_seconds=settings.scheduler_interval_seconds,
                    overdue_grace_seconds=settings.overdue_grace_seconds,
                ).run(),
            )
            if settings.freeze_startup_objects:
                gc.collect()
                gc.freeze()
            try:
                yield
            finally:
                await bids.close()
                await bid_connections.close()
                if gateway is not None:
                    await gateway.close()

    return create_service_app(
        SERVICE,
        title="Bazaar auctions",
        description="Auctions with proxy bidding, live streams, soft close and settlement.",
        routers=[api.router],
        lifespan=lifespan,
    )
