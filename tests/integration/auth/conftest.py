"""An auth service running in this process on a fresh database, with a real broker."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.engine import URL

from bazaar.kit.config import PlatformSettings
from bazaar.kit.testing import DatabaseFactory
from tests.integration.auth.support import Auth, auth_settings, running_auth


@pytest.fixture
async def auth_database(database_factory: DatabaseFactory) -> URL:
    """A fresh, migrated auth database."""
    return await database_factory.create("bazaar.auth")


@pytest.fixture
async def auth(auth_database: URL, platform_settings: PlatformSettings) -> AsyncIterator[Auth]:
    async with running_auth(auth_settings(auth_database), platform_settings) as running:
        yield running
