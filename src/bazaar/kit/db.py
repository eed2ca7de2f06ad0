"""The async database: engine, sessions, and Alembic migrations per service.

Every service owns one PostgreSQL database, reached through SQLAlchemy 2 (async,
asyncpg). Sessions are opened by the edge (a request dependency or a consumer
loop), which commits once: the effect, its outbox rows and the handled-message id
land in one transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData, event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction
from sqlalchemy.pool import NullPool

# One naming convention, so that migrations name constraints the same everywhere.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_metadata() -> MetaData:
    return MetaData(naming_convention=NAMING_CONVENTION)


def async_url(url: str | URL) -> URL:
    """The URL with the asyncpg driver, whatever driver (or none) it named."""
    parsed = make_url(url) if isinstance(url, str) else url
    return parsed.set(drivername="postgresql+asyncpg")


def asyncpg_dsn(url: str | URL) -> str:
    """A DSN that plain ``asyncpg.connect`` understands (for LISTEN and advisory locks)."""
    parsed = make_url(url) if isinstance(url, str) else url
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def create_engine(url: str | URL, pool_size: int = 20, *, pooled: bool = True) -> AsyncEngine:
    """An engine for one service database, with at most ``pool_size`` connections.
    ``pooled=False`` for short-lived tools.

    Connections are opened as they are needed and then kept (no overflow): SQLAlchemy
    closes an overflow connection when it is returned, and under load reopening it (a
    server backend started, asyncpg's type set-up, every statement prepared again) cost
    the services more CPU than their own work; waiting a moment for a pooled one is
    cheaper.

    A statement's parameters stay out of its errors (``hide_parameters``): errors are
    logged, and the values a request carried (tokens, personal data) must not be."""
    if not pooled:
        return create_async_engine(async_url(url), poolclass=NullPool, hide_parameters=True)
    return create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=0,
        pool_pre_ping=False,
        pool_recycle=1800,
        hide_parameters=True,
    )


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def create_read_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that open no transaction (the pool's connections in autocommit), for
    answers read by one statement.

    A transaction costs two round trips of its own (BEGIN, then COMMIT), as many as the
    read it wraps: a price look-up that every order makes pays them for nothing, since
    one statement sees one snapshot anyway. Several statements here would each see what
    was committed when it started, so an answer that reads more than once, or writes,
    takes a transaction (:func:`transaction`); these sessions refuse to write
    (:class:`ReadOnlySession`)."""
    return async_sessionmaker(
        engine.execution_options(isolation_level="AUTOCOMMIT"),
        expire_on_commit=False,
        autoflush=False,
        sync_session_class=ReadOnlySession,
    )


class WriteInReadSession(RuntimeError):
    """A write was attempted through a read session: a bug of the route, not the client's."""


class ReadOnlySession(Session):
    """A session for reads only. In autocommit every statement would commit on its own,
    so a write through it would land piecemeal, outside any unit of work: an insert,
    update or delete statement, or a flush of added, changed or deleted objects, raises
    :class:`WriteInReadSession` instead. (A write hidden in ``text()`` cannot be told
    from a read and is not caught.)"""


@event.listens_for(ReadOnlySession, "do_orm_execute")
def _refuse_write_statements(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        raise WriteInReadSession("a read session cannot write; take a transaction")


@event.listens_for(ReadOnlySession, "before_flush")
def _refuse_flushes(session: Session, _context: UOWTransaction, _instances: object) -> None:
    if session.new or session.dirty or session.deleted:
        raise WriteInReadSession("a read session cannot write; take a transaction")


@asynccontextmanager
async def transaction(
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """One unit of work: commit when the block ends normally, roll back otherwise."""
    async with sessions() as session, session.begin():
        yield session


def refused_as_data(exc: DBAPIError) -> bool:
    """Whether PostgreSQL refused a value itself (SQLSTATE class 22, "data exception": a
    NUL character in text, a string longer than its column, a number out of range), which
    no retry can cure, rather than being unreachable, busy or in conflict."""
    return str(getattr(exc.orig, "sqlstate", "") or "").startswith("22")


async def advisory_lock(session: AsyncSession, name: str) -> None:
    """Hold a PostgreSQL advisory lock named ``name`` until the transaction ends.

    Serialises what replicas (and the CLI) must not do at the same time, also before any
    row to lock exists: e.g. auth's first signing key, one account's login attempts.
    """
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": name}
    )


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


# --- databases and migrations -------------------------------------------------------


async def ensure_database(admin_url: str | URL, name: str, template: str | None = None) -> bool:
    """Create database ``name`` on the server of ``admin_url`` if it is missing.

    Returns True when it was created. ``template`` copies another database (fast
    clean databases for tests).
    """
    engine = create_async_engine(
        async_url(admin_url), poolclass=NullPool, isolation_level="AUTOCOMMIT"
    )
    try:
        async with engine.connect() as conn:
            exists = await conn.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            )
            if exists:
                return False
            clause = f' TEMPLATE "{template}"' if template else ""
            await conn.execute(text(f'CREATE DATABASE "{name}"{clause}'))
            return True
    finally:
        await engine.dispose()


async def drop_database(admin_url: str | URL, name: str) -> None:
    engine = create_async_engine(
        async_url(admin_url), poolclass=NullPool, isolation_level="AUTOCOMMIT"
    )
    try:
        async with engine.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await engine.dispose()


def database_url(server_url: str | URL, name: str) -> URL:
    """The URL of database ``name`` on the same server as ``server_url``."""
    parsed = make_url(server_url) if isinstance(server_url, str) else server_url
    return async_url(parsed.set(database=name))


def alembic_config(migrations_dir: Path, url: str | URL) -> Config:
    """An Alembic configuration built in code: no ``alembic.ini`` per service."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    rendered = async_url(url).render_as_string(hide_password=False)
    config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return config


async def migrate(migrations_dir: Path, url: str | URL, revision: str = "head") -> None:
    """Apply a service's migrations up to ``revision`` (Alembic runs in a worker thread)."""
    config = alembic_config(migrations_dir, url)
    await asyncio.to_thread(command.upgrade, config, revision)


def run_migrations_online(config: Config, target_metadata: MetaData | Sequence[MetaData]) -> None:
    """The body of every service's ``migrations/env.py``: run the upgrade on asyncpg."""
    from alembic import context

    def run(connection: Connection) -> None:
        context.configure(
            connection=connection,
            target_metadata=list(target_metadata)
            if isinstance(target_metadata, Sequence)
            else target_metadata,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def run_async() -> None:
        url = config.get_main_option("sqlalchemy.url")
        assert url is not None, "sqlalchemy.url is not set in the Alembic config"
        engine = create_async_engine(url, poolclass=NullPool)
        try:
            async with engine.connect() as connection:
                await connection.run_sync(run)
        finally:
            await engine.dispose()

    asyncio.run(run_async())


def migrations_dir(package: str) -> Path:
    """The Alembic directory of a service package (``bazaar.catalog`` → its ``migrations/``)."""
    from importlib.resources import files

    return Path(str(files(package) / "migrations"))


async def make_migration(migrations_dir: Path, url: str | URL, message: str) -> None:
    """Autogenerate a new revision from the difference between the models and database ``url``.

    A developer tool (``bazaar dev make-migration``): ``url`` must be a database with the
    service's current migrations applied.
    """
    config = alembic_config(migrations_dir, url)
    await asyncio.to_thread(command.revision, config, message=message, autogenerate=True)
