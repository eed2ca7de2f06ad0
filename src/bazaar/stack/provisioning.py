"""Databases, migrations and the auth records a deployment needs before its services start.

Used by ``bazaar up`` (every start: idempotent) and by the administrative commands
(``bazaar migrate``, ``bazaar users create``, ``bazaar auth rotate-keys``). This is a
composition root: it calls auth's administrative functions (``bazaar.auth.admin``) for
the records only auth knows how to write (hashed client secrets, users, signing keys),
importing them only when needed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bazaar.kit.db import (
    create_engine,
    create_session_factory,
    database_url,
    ensure_database,
    migrate,
    migrations_dir,
    transaction,
)
from bazaar.stack.services import ServiceSpec

if TYPE_CHECKING:
    from bazaar.auth.schemas import UserRead


async def prepare_databases(
    server_url: str | URL,
    names: Mapping[str, str],
    services: Sequence[ServiceSpec],
) -> dict[str, URL]:
    """Create each service's database if missing and apply its migrations; their URLs.

    ``names`` maps a service to its database name. Databases are created concurrently;
    migrations run one after the other (Alembic's context is process-global).
    """
    await asyncio.gather(
        *(ensure_database(server_url, names[spec.name]) for spec in services if spec.database)
    )
    urls: dict[str, URL] = {}
    for spec in services:
        if not spec.database:
            continue
        url = database_url(server_url, names[spec.name])
        await migrate_service(spec, url)
        urls[spec.name] = url
    return urls


async def migrate_service(spec: ServiceSpec, url: str | URL) -> None:
    await migrate(migrations_dir(spec.package), url)


@asynccontextmanager
async def auth_sessions(
    auth_database_url: str | URL,
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on auth's database for one administrative task (no pool kept)."""
    engine = create_engine(auth_database_url, pooled=False)
    try:
        yield create_session_factory(engine)
    finally:
        await engine.dispose()


async def register_service_clients(
    auth_database_url: str | URL, client_secrets: Mapping[str, str]
) -> None:
    """Make auth know every service client with its current secret (idempotent)."""
    from bazaar.auth.admin import ensure_service_client

    if not client_secrets:
        return
    async with auth_sessions(auth_database_url) as sessions, transaction(sessions) as session:
        for client_id, secret in sorted(client_secrets.items()):
            await ensure_service_client(session, client_id, secret)


async def create_user(
    auth_database_url: str | URL,
    *,
    email: str,
    password: str,
    display_name: str,
    roles: Sequence[str],
) -> UserRead:
    """Create a user directly in auth's database (the first admin, scripted set-ups)."""
    from bazaar.auth import admin

    async with auth_sessions(auth_database_url) as sessions:
        return await admin.create_user(sessions, email, password, display_name, list(roles))


async def rotate_signing_key(auth_database_url: str | URL, *, passphrase: bytes | None) -> str:
    """Make a new signing key current (encrypted with ``passphrase``); returns its ``kid``."""
    from bazaar.auth import admin

    async with auth_sessions(auth_database_url) as sessions:
        return await admin.rotate_signing_key(sessions, passphrase=passphrase)
