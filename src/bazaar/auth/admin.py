"""What the command line and ``bazaar up`` call on the auth database, outside any request.

Each function is one unit of work: ``create_user`` and ``rotate_signing_key`` open and
commit their own transaction from a session factory; ``ensure_service_client`` works
in the caller's session (the stack registers several clients in one transaction).

    async with auth_database(AuthSettings()) as sessions:
        await create_user(sessions, "ada@example.com", "s3cret-pass", "Ada", ["admin"])
        kid = await rotate_signing_key(sessions, passphrase=None)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bazaar.auth import service
from bazaar.auth.schemas import UserCreate, UserRead
from bazaar.auth.service import Passwords, password_hasher
from bazaar.auth.settings import AuthSettings
from bazaar.kit.db import create_engine, create_session_factory, transaction
from bazaar.kit.tokens import ROLE_SERVICE


@asynccontextmanager
async def auth_database(
    settings: AuthSettings | None = None,
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on the auth database (``BAZAAR_AUTH_DATABASE_URL``), for a short-lived tool."""
    settings = settings or AuthSettings()
    engine = create_engine(settings.database_url.get_secret_value(), pooled=False)
    try:
        yield create_session_factory(engine)
    finally:
        await engine.dispose()


async def create_user(
    sessions: async_sessionmaker[AsyncSession],
    email: str,
    password: str,
    display_name: str,
    roles: Sequence[str] = ("customer",),
    *,
    settings: AuthSettings | None = None,
) -> UserRead:
    """Create a user with ``roles`` (``customer`` is always added) and announce it.

    Raises ``pydantic.ValidationError`` for a bad email, a password under 8 characters
    or an empty name, ``bazaar.kit.errors.ValidationFailed`` for an unknown role and
    ``bazaar.auth.errors.EmailTaken`` when the email is registered already.
    """
    data = UserCreate(email=email, password=password, display_name=display_name)
    passwords = Passwords(password_hasher(settings or AuthSettings()))
    async with transaction(sessions) as session:
        return await service.create_account(
            session,
            passwords,
            email=data.email,
            password=data.password,
            display_name=data.display_name,
            roles=roles,
        )


async def rotate_signing_key(
    sessions: async_sessionmaker[AsyncSession], *, passphrase: bytes | None
) -> str:
    """Retire the active signing key and make a new one active; returns the new ``kid``.
    Its private half is encrypted with ``passphrase`` (the auth replicas' own,
    ``BAZAAR_AUTH_SIGNING_KEY_PASSPHRASE``, or they cannot sign with it).

    Running auth replicas notice within ``BAZAAR_AUTH_KEY_RELOAD_INTERVAL_SECONDS`` and
    sign with the new key once it has been published for
    ``BAZAAR_AUTH_KEY_PUBLISH_DELAY_SECONDS``; tokens signed with the old one stay
    valid until they expire.
    """
    async with transaction(sessions) as session:
        return await service.rotate_signing_key(session, passphrase)


async def ensure_service_client(
    session: AsyncSession,
    client_id: str,
    secret: str,
    *,
    roles: Sequence[str] = (ROLE_SERVICE,),
) -> bool:
    """Create the service client or update its secret hash (idempotent, in the caller's
    transaction). True when something changed. Its tokens have ``sub`` =
    ``client:<client_id>`` and the roles given (``["service"]``)."""
    return await service.ensure_service_client(session, Passwords(), client_id, secret, roles)
