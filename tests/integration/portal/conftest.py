"""The portal in this process, in front of a fake public API served over real HTTP."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from bazaar.kit.config import PlatformSettings
from bazaar.kit.logging import configure_logging
from bazaar.kit.testing import running_app
from bazaar.portal.app import create_app
from bazaar.portal.settings import PortalSettings
from tests.integration.portal.fake_platform import FakePlatform

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
IDEMPOTENCY = re.compile(r'name="idempotency_key" value="([^"]+)"')


@pytest.fixture
async def fake() -> AsyncIterator[FakePlatform]:
    platform = FakePlatform()
    server = TestServer(platform.app())
    await server.start_server()
    platform.server = server
    try:
        yield platform
    finally:
        await server.close()


@pytest.fixture
def portal_logs() -> Iterator[io.StringIO]:
    """Everything the portal logs (as in production: JSON, here at DEBUG), in a buffer.

    Request it before ``portal`` so the app's loggers are made with this configuration.
    """
    buffer = io.StringIO()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    configure_logging("portal", "json", "DEBUG", stream=buffer)
    try:
        yield buffer
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


@pytest.fixture
def portal_settings(tmp_path: Path) -> PortalSettings:
    return PortalSettings(session_secret=SecretStr("test-session-secret"), data_dir=tmp_path)


@pytest.fixture
async def portal(
    fake: FakePlatform, portal_settings: PortalSettings
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(portal_settings, PlatformSettings(gateway_url=fake.url))
    async with running_app(app) as client:
        client.base_url = httpx.URL("http://portal.test")
        yield client


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has no CSRF token"
    return found.group(1)


def idempotency_key_of(html: str) -> str:
    found = IDEMPOTENCY.search(html)
    assert found, "the page has no idempotency key"
    return found.group(1)


async def sign_in(
    portal: httpx.AsyncClient, email: str, password: str = "password-123"
) -> httpx.Response:
    page = await portal.get("/sign-in")
    return await portal.post(
        "/sign-in",
        data={"email": email, "password": password, "csrf_token": csrf_of(page.text)},
    )
