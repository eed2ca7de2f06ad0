"""A catalog service running in this process on a fresh database, with a real broker."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from bazaar.catalog.app import create_app
from bazaar.catalog.settings import CatalogSettings
from bazaar.kit.config import PlatformSettings
from bazaar.kit.testing import DatabaseFactory, running_app


@pytest.fixture
async def catalog(
    database_factory: DatabaseFactory, platform_settings: PlatformSettings
) -> AsyncIterator[httpx.AsyncClient]:
    url = await database_factory.create("bazaar.catalog")
    settings = CatalogSettings(database_url=url.render_as_string(hide_password=False))
    async with running_app(create_app(settings, platform_settings)) as client:
        yield client
