"""Test fixtures for the real parts: PostgreSQL, the broker, clean databases, waiting.

Loaded by ``tests/conftest.py`` (``pytest_plugins``). PostgreSQL is the machine's
when ``BAZAAR_TEST_DATABASE_URL`` is set (CI sets it), otherwise an embedded server
started for the session. The broker is always a tansu process started for the
session. Each test gets its own databases (copied from a migrated template, which
is fast) and its own topic prefix, so tests never see each other's data or messages.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy.engine import URL, make_url

from bazaar.kit.config import PlatformSettings
from bazaar.kit.db import (
    async_url,
    database_url,
    drop_database,
    ensure_database,
    migrate,
    migrations_dir,
)
from bazaar.stack.broker import EmbeddedBroker
from bazaar.stack.postgres import EmbeddedPostgres

T = TypeVar("T")


async def wait_for(
    condition: Callable[[], Awaitable[T | None] | T | None],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "condition",
) -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds.

    The one place tests wait: always for a condition, always with a deadline.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        result = condition()
        if asyncio.iscoroutine(result) or isinstance(result, Awaitable):
            result = await result
        if result:
            return result
        last = result
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {message} (last: {last!r})"
            )
        await asyncio.sleep(interval)


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[URL]:
    """The admin URL of the PostgreSQL server the tests use."""
    configured = os.environ.get("BAZAAR_TEST_DATABASE_URL")
    if configured:
        yield async_url(make_url(configured))
        return
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data")
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    """A tansu broker for the whole session (tests may restart it)."""
    process = EmbeddedBroker()
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def platform_settings(broker: EmbeddedBroker) -> PlatformSettings:
    """Platform settings pointing at the test broker, with a topic prefix of this test's own."""
    return PlatformSettings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        log_format="console",
    )


class DatabaseFactory:
    """Makes clean, migrated databases for a service: one migrated template, copies per test."""

    def __init__(self, server_url: URL, run_id: str) -> None:
        self.server_url = server_url
        self.run_id = run_id
        self._templates: dict[str, str] = {}
        self._lock = asyncio.Lock()
        self.created: list[str] = []

    async def template(self, package: str) -> str:
        async with self._lock:
            if package not in self._templates:
                directory = migrations_dir(package)
                digest = _tree_digest(directory)
                name = f"bzt_{package.rsplit('.', 1)[-1]}_{digest}"
                if await ensure_database(self.server_url, name):
                    try:
                        await migrate(directory, database_url(self.server_url, name))
                    except BaseException:
                        await drop_database(self.server_url, name)
                        raise
                self._templates[package] = name
            return self._templates[package]

    async def create(self, package: str) -> URL:
        """A new database with ``package``'s migrations applied."""
        template = await self.template(package)
        name = f"bz_{package.rsplit('.', 1)[-1]}_{self.run_id}_{uuid.uuid4().hex[:8]}"
        await ensure_database(self.server_url, name, template=template)
        self.created.append(name)
        return database_url(self.server_url, name)

    async def drop_all(self) -> None:
        for name in self.created:
            await drop_database(self.server_url, name)
        self.created.clear()


def _tree_digest(directory: Path) -> str:
    """A short hash of a migrations tree: a changed migration gets a fresh template."""
    digest = hashlib.sha256()
    for path in sorted(directory.rglob("*.py")):
        digest.update(path.relative_to(directory).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


@pytest.fixture(scope="session")
async def database_factory(postgres_url: URL) -> AsyncIterator[DatabaseFactory]:
    factory = DatabaseFactory(postgres_url, uuid.uuid4().hex[:6])
    try:
        yield factory
    finally:
        await factory.drop_all()
