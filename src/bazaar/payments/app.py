"""The payments service's composition root: provider client, processor, command consumer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from bazaar.kit.config import PlatformSettings
from bazaar.kit.http import create_service_app
from bazaar.kit.messaging.consumer import MessageConsumer
from bazaar.kit.runtime import service_runtime
from bazaar.payments import api, handlers
from bazaar.payments.processor import PaymentProcessor
from bazaar.payments.provider import ProviderClient
from bazaar.payments.service import SOURCE
from bazaar.payments.settings import PaymentsSettings

SERVICE = "payments"


def create_app(
    settings: PaymentsSettings | None = None, platform: PlatformSettings | None = None
) -> FastAPI:
    settings = settings or PaymentsSettings()
    platform = platform or PlatformSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        provider = ProviderClient(
            settings.psp_url,
            settings.psp_api_key.get_secret_value(),
            timeout_seconds=settings.provider_timeout_seconds,
        )
        try:
            async with service_runtime(
                app, service=SERVICE, settings=settings, platform=platform
            ) as runtime:
                processor = PaymentProcessor(
                    sessions=runtime.sessions, provider=provider, settings=settings
                )
                app.state.provider = provider
                app.state.processor = processor
                app.state.card_fingerprint_key = (
                    settings.card_fingerprint_key.get_secret_value()
                    or settings.psp_api_key.get_secret_value()
                ).encode()
                consumer = MessageConsumer(
                    name=handlers.CONSUMER_NAME,
                    topics=handlers.TOPICS,
                    handlers=handlers.command_handlers(processor),
                    sessions=runtime.sessions,
                    settings=platform,
                    source=SOURCE,
                    # A command locks its own payment only.
                    concurrent_partitions=True,
                )
                app.state.consumer = consumer
                runtime.start_outbox_relay()
                runtime.start_background("commands", consumer.run())
                if settings.process_payments:
                    runtime.start_background("processor", processor.run())
                yield
        finally:
            await provider.close()

    return create_service_app(
        SERVICE,
        title="Bazaar payments",
        description="Payment methods (provider tokens), payments, refunds and their ledger.",
        routers=[api.router],
        lifespan=lifespan,
    )
