"""The catalog service's composition root."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from bazaar.catalog import api
from bazaar.catalog.settings import CatalogSettings
from bazaar.kit.config import PlatformSettings
from bazaar.kit.http import create_service_app
from bazaar.kit.runtime import service_runtime


def create_app(
    settings: CatalogSettings | None = None, platform: PlatformSettings | None = None
) -> FastAPI:
    settings = settings or CatalogSettings()
    platform = platform or PlatformSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with service_runtime(
            app, service="catalog", settings=settings, platform=platform
        ) as runtime:
            runtime.start_outbox_relay()
            yield

    return create_service_app(
        "catalog",
        title="Bazaar catalog",
        description="Goods and services, their prices and stock.",
        routers=[api.router],
        lifespan=lifespan,
    )
