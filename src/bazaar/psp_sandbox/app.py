"""The sandbox's composition root: settings, logging, the ledger and the provider.

Run it as its own process, e.g.
``uvicorn --factory bazaar.psp_sandbox.app:create_app --host 127.0.0.1 --port 8099``.
No database and no broker, so no ``service_runtime``: ``/readyz`` has nothing to check.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from bazaar.kit.config import PlatformSettings
from bazaar.kit.http import create_service_app
from bazaar.kit.logging import configure_logging
from bazaar.psp_sandbox import api
from bazaar.psp_sandbox.ledger import Ledger
from bazaar.psp_sandbox.service import PspSandbox
from bazaar.psp_sandbox.settings import PspSandboxSettings

SERVICE = "psp_sandbox"


def create_app(
    settings: PspSandboxSettings | None = None, platform: PlatformSettings | None = None
) -> FastAPI:
    settings = settings or PspSandboxSettings()
    platform = platform or PlatformSettings()
    configure_logging(SERVICE, platform.log_format, platform.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ledger = await asyncio.to_thread(Ledger.open, settings.data_dir)
        app.state.api_key = settings.api_key.get_secret_value()
        app.state.sandbox = PspSandbox(ledger, answer_late_delay=settings.slow_card_delay_seconds)
        try:
            yield
        finally:
            ledger.close()

    return create_service_app(
        SERVICE,
        title="Bazaar payment provider sandbox",
        description="A stand-in for an external card payment provider; behaves by card number.",
        routers=[api.router],
        lifespan=lifespan,
    )
