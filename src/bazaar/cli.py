"""The one command line: ``bazaar up``, ``serve``, ``migrate``, ``users``, ``auth``, ``support``,
``dev``.

Every command is a thin shell over :mod:`bazaar.stack`; heavy imports happen inside
the commands so that ``python -m bazaar serve <service>`` starts fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import uuid
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.panel import Panel
from rich.text import Text

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

    from bazaar.auth.schemas import UserRead
    from bazaar.stack.services import ServiceSpec
    from bazaar.stack.supervisor import Stack

T = TypeVar("T")

app = typer.Typer(
    name="bazaar",
    help="Bazaar: a marketplace of goods, services and auctions, as microservices.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
users_app = typer.Typer(help="Manage users directly in auth's database.", no_args_is_help=True)
auth_app = typer.Typer(help="Administer the auth service.", no_args_is_help=True)
support_app = typer.Typer(help="Operate the support service.", no_args_is_help=True)
dev_app = typer.Typer(help="Developer tools.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(auth_app, name="auth")
app.add_typer(support_app, name="support")
app.add_typer(dev_app, name="dev")

err_console = Console(stderr=True, highlight=False)


class CliError(Exception):
    """A failure the user can act on: shown as a message, exit code 1."""


def _fail(message: str, title: str = "Error") -> NoReturn:
    err_console.print(
        Panel(Text(message), title=title, title_align="left", border_style="red", expand=False)
    )
    raise typer.Exit(1)


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; known failures become a red message and exit code 1."""
    from pydantic import ValidationError

    from bazaar.kit.errors import DomainError
    from bazaar.stack.processes import ProcessFailed
    from bazaar.stack.supervisor import StackError

    try:
        return asyncio.run(coroutine)
    except (CliError, StackError, ProcessFailed) as exc:
        _fail(str(exc))
    except DomainError as exc:
        _fail(f"{exc.detail} ({exc.code})", title=exc.title)
    except ValidationError as exc:
        problems = "\n".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'value'}: {error['msg']}"
            for error in exc.errors()
        )
        _fail(problems, title="Invalid input")
    except Exception as exc:  # the command line's last resort: say what failed
        if os.environ.get("BAZAAR_DEBUG"):
            raise
        _fail(f"{type(exc).__name__}: {exc}\n(set BAZAAR_DEBUG=1 for the traceback)")


DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="The data directory of `bazaar up` (its embedded PostgreSQL) [env: BAZAAR_DATA_DIR].",
        show_default=False,
    ),
]


def _configure_logging() -> None:
    """Administrative commands log like the services do, readable on a terminal."""
    from bazaar.kit.config import PlatformSettings
    from bazaar.kit.logging import configure_logging

    configure_logging("cli", "console", PlatformSettings().log_level)
    # Alembic announces its plugins at INFO when first imported: noise on a terminal.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


def _parse_replicas(values: list[str]) -> dict[str, int]:
    replicas: dict[str, int] = {}
    for value in values:
        service, sep, count = value.partition("=")
        if not sep or not count.strip().isdigit() or int(count) < 1:
            raise typer.BadParameter(
                f"{value!r}: expected SERVICE=N with N ≥ 1", param_hint="--replicas"
            )
        replicas[service.strip().replace("-", "_")] = int(count)
    return replicas


# --- bazaar up ---------------------------------------------------------------------------


@app.command()
def up(
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            envvar="BAZAAR_DATA_DIR",
            help="PostgreSQL's data, secrets, the sandbox's ledger (default: ./.bazaar).",
            show_default=False,
        ),
    ] = None,
    port: Annotated[
        int, typer.Option(envvar="BAZAAR_PORT", help="The gateway's public port (0: any free).")
    ] = 8000,
    replicas: Annotated[
        list[str] | None,
        typer.Option(
            "--replicas",
            "-r",
            metavar="SERVICE=N",
            help="SERVICE=N: run N replicas of SERVICE (repeatable).",
        ),
    ] = None,
    psp_port: Annotated[
        int,
        typer.Option(
            envvar="BAZAAR_PSP_SANDBOX_PORT", help="The payment sandbox's port (0: any free)."
        ),
    ] = 8099,
    postgres_url: Annotated[
        str | None,
        typer.Option(
            envvar="BAZAAR_POSTGRES_URL",
            help="Use this PostgreSQL server (an admin URL) instead of the embedded one.",
        ),
    ] = None,
    log_level: Annotated[
        str, typer.Option(envvar="BAZAAR_LOG_LEVEL", help="Log level of every process.")
    ] = "INFO",
) -> None:
    """Run the whole platform on this machine: PostgreSQL, broker, every service, the gateway."""
    from bazaar.stack.datadir import default_data_dir
    from bazaar.stack.supervisor import Stack, StackError

    try:
        stack = Stack(
            data_dir or default_data_dir(),
            port=port,
            replicas=_parse_replicas(replicas or []),
            psp_port=psp_port,
            postgres_url=postgres_url,
            log_level=log_level,
        )
    except StackError as exc:
        _fail(str(exc))
    _run(_up(stack))


async def _up(stack: Stack) -> None:
    from bazaar.stack.console import ConsoleOutput, ready_panel

    output = stack.output
    console = output.console if isinstance(output, ConsoleOutput) else Console()
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    signals_seen = 0

    def on_signal(signum: int) -> None:
        nonlocal signals_seen
        signals_seen += 1
        name = signal.Signals(signum).name
        if signals_seen == 1:
            output.event(
                f"{name}: stopping (send it again to kill everything at once)", level="warning"
            )
            stop_requested.set()
        else:
            output.event(f"{name} again: killing every process", level="error")
            stack.kill_all()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    starting = asyncio.create_task(stack.start(), name="stack start")
    stopping = asyncio.create_task(stop_requested.wait(), name="stop requested")
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            starting.result()
            console.print(ready_panel(stack.endpoints(), "Bazaar is up"))
            console.print(
                f"Bazaar is up at {stack.gateway_url} (started in {stack.startup_seconds:.1f}s)"
                " — press Ctrl-C to stop",
                soft_wrap=True,
                highlight=False,
            )
            await stopping
        else:
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
    finally:
        stopping.cancel()
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await starting
        await stack.stop()
        if stack.shutdown_seconds is not None:
            output.event(f"stopped in {stack.shutdown_seconds:.1f}s")


# --- bazaar serve ------------------------------------------------------------------------


@app.command()
def serve(
    service: Annotated[str, typer.Argument(help="The service to run (auth, catalog, gateway, …).")],
    app_reference: Annotated[
        str | None,
        typer.Option("--app", help="module:factory to serve instead of the service's own."),
    ] = None,
    kind: Annotated[
        str, typer.Option(help="asgi: the factory returns an ASGI app; main: it serves by itself.")
    ] = "asgi",
) -> None:
    """Run one service from its environment settings (production mode)."""
    import dataclasses

    from bazaar.stack.serve import serve as serve_spec
    from bazaar.stack.services import ServiceSpec, spec_named

    if kind not in ("asgi", "main"):
        raise typer.BadParameter("asgi or main", param_hint="--kind")
    try:
        spec = spec_named(service)
    except KeyError as exc:
        if app_reference is None:
            _fail(str(exc.args[0]))
        spec = ServiceSpec(service.replace("-", "_"), 8000)
    if app_reference is not None:
        spec = dataclasses.replace(
            spec, app=app_reference, kind="main" if kind == "main" else "asgi"
        )
    raise typer.Exit(serve_spec(spec))


# --- bazaar migrate ----------------------------------------------------------------------


def _database_specs(names: list[str]) -> list[ServiceSpec]:
    from bazaar.stack.services import SERVICES, spec_named, with_database

    if not names:
        return list(with_database(SERVICES))
    specs = []
    for name in names:
        try:
            spec = spec_named(name)
        except KeyError as exc:
            raise CliError(str(exc.args[0])) from None
        if not spec.database:
            raise CliError(f"{spec.name} has no database")
        specs.append(spec)
    return specs


@app.command()
def migrate(
    services: Annotated[
        list[str] | None, typer.Argument(help="Services to migrate (default: all with a database).")
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Apply migrations to each service's database (BAZAAR_<SVC>_DATABASE_URL or --data-dir)."""
    _configure_logging()
    _run(_migrate(_database_specs(services or []), data_dir))


async def _migrate(specs: list[ServiceSpec], data_dir: Path | None) -> None:
    from bazaar.kit.db import async_url
    from bazaar.stack.datadir import EMBEDDED_DATABASE_PREFIX, database_name, embedded_server
    from bazaar.stack.provisioning import migrate_service, prepare_databases

    if data_dir is not None:
        async with embedded_server(data_dir) as admin_url:
            names = {
                spec.name: database_name(EMBEDDED_DATABASE_PREFIX, spec.name) for spec in specs
            }
            urls = await prepare_databases(admin_url, names, specs)
        for name, url in urls.items():
            err_console.print(f"[green]✓[/] {name}: {url.database} is at head")
        return
    missing = [
        f"{spec.env_prefix}DATABASE_URL"
        for spec in specs
        if not os.environ.get(f"{spec.env_prefix}DATABASE_URL")
    ]
    if missing:
        raise CliError(f"not set: {', '.join(missing)} (or use --data-dir)")
    for spec in specs:
        url = async_url(os.environ[f"{spec.env_prefix}DATABASE_URL"])
        await migrate_service(spec, url)
        err_console.print(f"[green]✓[/] {spec.name}: {url.database} is at head")


# --- bazaar users / auth -----------------------------------------------------------------

DatabaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="BAZAAR_AUTH_DATABASE_URL",
        help="Auth's database [env: BAZAAR_AUTH_DATABASE_URL].",
        show_default=False,
    ),
]


@asynccontextmanager
async def _auth_database(database_url: str | None, data_dir: Path | None) -> AsyncIterator[URL]:
    """Auth's database: by URL, or in a data directory's embedded server (migrated first)."""
    from bazaar.kit.db import async_url
    from bazaar.stack.datadir import (
        EMBEDDED_DATABASE_PREFIX,
        PG_DIR,
        database_name,
        default_data_dir,
        embedded_server,
    )
    from bazaar.stack.provisioning import prepare_databases
    from bazaar.stack.services import spec_named

    if database_url and data_dir is None:
        yield async_url(database_url)
        return
    if data_dir is None:
        data_dir = default_data_dir()
        if not (data_dir / PG_DIR / "PG_VERSION").exists():
            raise CliError(
                "no auth database: set BAZAAR_AUTH_DATABASE_URL, pass --database-url, "
                f"or --data-dir (there is no embedded PostgreSQL in {data_dir.resolve()})"
            )
    auth = spec_named("auth")
    async with embedded_server(data_dir) as admin_url:
        names = {"auth": database_name(EMBEDDED_DATABASE_PREFIX, "auth")}
        urls = await prepare_databases(admin_url, names, [auth])
        yield urls["auth"]


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Option(help="The user's email (their login).")],
    password: Annotated[
        str,
        typer.Option(
            prompt=True, hide_input=True, confirmation_prompt=True, help="At least 8 characters."
        ),
    ],
    role: Annotated[
        list[str] | None,
        typer.Option("--role", help="customer, seller, support or admin (repeatable)."),
    ] = None,
    display_name: Annotated[
        str | None, typer.Option(help="Default: the email's local part.")
    ] = None,
    database_url: DatabaseUrlOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Create a user directly in auth's database (for example the first admin)."""
    from bazaar.kit.tokens import ALL_ROLES

    roles = sorted({"customer", *(role or [])})
    unknown = sorted(set(roles) - ALL_ROLES)
    if unknown:
        raise typer.BadParameter(
            f"unknown role(s) {', '.join(unknown)}; known: {', '.join(sorted(ALL_ROLES))}",
            param_hint="--role",
        )
    if len(password) < 8:
        raise typer.BadParameter("at least 8 characters", param_hint="--password")
    name = display_name or email.partition("@")[0]
    _configure_logging()
    user = _run(_users_create(email, password, name, roles, database_url, data_dir))
    err_console.print(f"[green]✓[/] created {email} with roles {', '.join(roles)} (id {user.id})")


async def _users_create(
    email: str,
    password: str,
    display_name: str,
    roles: list[str],
    database_url: str | None,
    data_dir: Path | None,
) -> UserRead:
    from bazaar.stack.provisioning import create_user

    async with _auth_database(database_url, data_dir) as url:
        return await create_user(
            url, email=email, password=password, display_name=display_name, roles=roles
        )


@auth_app.command("rotate-keys")
def auth_rotate_keys(
    database_url: DatabaseUrlOption = None, data_dir: DataDirOption = None
) -> None:
    """Make a new signing key current; tokens signed with the old one stay valid."""
    _configure_logging()
    kid, encrypted = _run(_rotate_keys(database_url, data_dir))
    err_console.print(f"[green]✓[/] signing key rotated: new kid {kid}")
    if not encrypted:
        err_console.print(
            "[yellow]![/] its private half is stored unencrypted: "
            "set BAZAAR_AUTH_SIGNING_KEY_PASSPHRASE (as the auth replicas have it)"
        )


async def _rotate_keys(database_url: str | None, data_dir: Path | None) -> tuple[str, bool]:
    """The new kid, and whether its private half is stored encrypted."""
    from bazaar.auth.settings import AuthSettings
    from bazaar.stack.credentials import signing_key_passphrase
    from bazaar.stack.datadir import default_data_dir
    from bazaar.stack.provisioning import rotate_signing_key

    async with _auth_database(database_url, data_dir) as url:
        # The passphrase the auth replicas open keys with: the data directory's (``bazaar
        # up``), or BAZAAR_AUTH_SIGNING_KEY_PASSPHRASE beside a database URL (production).
        if database_url and data_dir is None:
            passphrase = AuthSettings().key_passphrase()
        else:
            passphrase = signing_key_passphrase(data_dir or default_data_dir()).encode()
        return await rotate_signing_key(url, passphrase=passphrase), passphrase is not None


# --- bazaar support ----------------------------------------------------------------------


@support_app.command("replay")
def support_replay(
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            envvar="BAZAAR_SUPPORT_DATABASE_URL",
            help="Support's database [env: BAZAAR_SUPPORT_DATABASE_URL]; the broker is "
            "BAZAAR_KAFKA_BOOTSTRAP_SERVERS.",
            show_default=False,
        ),
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Rebuild support's history from what the topics still hold.

    Empties the history, then reads every topic from its earliest offset in a fresh
    consumer group; support actions are kept.
    """
    _configure_logging()
    result = _run(_support_replay(database_url, data_dir))
    err_console.print(
        f"[green]✓[/] history rebuilt: {result.recorded} events recorded from "
        f"{result.read} messages in {result.partitions} partitions"
    )


async def _support_replay(database_url: str | None, data_dir: Path | None) -> Any:
    import json

    from bazaar.kit.config import PlatformSettings
    from bazaar.kit.db import async_url, create_engine, create_session_factory
    from bazaar.kit.db import database_url as database_url_on
    from bazaar.stack.datadir import (
        EMBEDDED_DATABASE_PREFIX,
        STATE_FILE,
        database_name,
        default_data_dir,
        embedded_server,
    )
    from bazaar.support.replay import replay_history
    from bazaar.support.settings import SupportSettings

    async def replay(url: URL, platform: PlatformSettings) -> Any:
        settings = SupportSettings()
        engine = create_engine(url, pooled=False)
        try:
            return await replay_history(
                create_session_factory(engine),
                platform,
                group=settings.consumer_group,
                batch_size=settings.ingest_batch_size,
            )
        finally:
            await engine.dispose()

    if database_url and data_dir is None:
        return await replay(async_url(database_url), PlatformSettings())
    # A running `bazaar up`: its embedded broker lives only as long as it does.
    data_dir = data_dir or default_data_dir()
    state_file = data_dir / STATE_FILE
    if not state_file.exists():
        raise CliError(
            f"no running `bazaar up` in {data_dir.resolve()} (its broker holds the topics); "
            "or set BAZAAR_SUPPORT_DATABASE_URL and BAZAAR_KAFKA_BOOTSTRAP_SERVERS"
        )
    bootstrap = json.loads(state_file.read_text()).get("bootstrap_servers")
    platform = PlatformSettings(kafka_bootstrap_servers=bootstrap)
    async with embedded_server(data_dir) as admin_url:
        name = database_name(EMBEDDED_DATABASE_PREFIX, "support")
        return await replay(database_url_on(admin_url, name), platform)


# --- bazaar dev --------------------------------------------------------------------------


@dev_app.command("make-migration")
def dev_make_migration(
    service: Annotated[str, typer.Argument(help="The service whose models changed.")],
    message: Annotated[str, typer.Argument(help="What the migration does, in a few words.")],
    server_url: Annotated[
        str | None,
        typer.Option(
            envvar="BAZAAR_DEV_DATABASE_URL",
            help="PostgreSQL admin URL for the scratch database [default: a temporary one].",
        ),
    ] = None,
) -> None:
    """Autogenerate a migration: diff the service's models against a scratch database at head."""
    spec = _database_specs([service])[0]
    _configure_logging()
    created = _run(_make_migration(spec, message, server_url))
    for path in created:
        err_console.print(f"[green]✓[/] wrote {path}")
        if _is_empty_migration(path):
            err_console.print(
                "[yellow]  no difference between the models and the migrations was found: "
                "the revision is empty (delete it if you did not mean to write one by hand)[/]"
            )
    if not created:
        err_console.print("[yellow]no new migration file was written[/]")


def _is_empty_migration(path: Path) -> bool:
    """Whether the autogenerated ``upgrade()`` does nothing (only comments and ``pass``)."""
    text = path.read_text()
    _, _, body = text.partition("def upgrade()")
    body = body.partition("def downgrade()")[0]
    statements = [
        line.strip()
        for line in body.splitlines()[1:]
        if line.strip() and not line.strip().startswith("#")
    ]
    return statements == ["pass"]


async def _make_migration(spec: ServiceSpec, message: str, server_url: str | None) -> list[Path]:
    import tempfile

    from bazaar.kit.db import async_url, migrations_dir
    from bazaar.stack.datadir import embedded_server

    directory = migrations_dir(spec.package)
    before = set((directory / "versions").glob("*.py"))
    if server_url:
        await _make_migration_on(spec, message, async_url(server_url))
    else:
        with tempfile.TemporaryDirectory(prefix="bazaar-scratch-") as scratch:
            async with embedded_server(Path(scratch)) as admin_url:
                await _make_migration_on(spec, message, admin_url)
    return sorted(set((directory / "versions").glob("*.py")) - before)


async def _make_migration_on(spec: ServiceSpec, message: str, admin_url: URL) -> None:
    from bazaar.kit.db import (
        database_url,
        drop_database,
        ensure_database,
        make_migration,
        migrations_dir,
    )
    from bazaar.stack.provisioning import migrate_service

    name = f"bazaar_scratch_{spec.name}_{uuid.uuid4().hex[:8]}"
    await ensure_database(admin_url, name)
    try:
        url = database_url(admin_url, name)
        await migrate_service(spec, url)
        await make_migration(migrations_dir(spec.package), url, message)
    finally:
        await drop_database(admin_url, name)


def main() -> None:
    app()


@dev_app.command("docs")
def dev_docs(
    docs: Annotated[Path, typer.Option(help="The docs directory to write into.")] = Path("docs"),
) -> None:
    """Regenerate docs/events.md and docs/configuration.md from the contracts and settings."""
    from bazaar.reference import write_reference

    for path in write_reference(docs):
        err_console.print(f"[green]✓[/] wrote {path}")
