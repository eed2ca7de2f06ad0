"""``bazaar up`` as a Python object: the whole platform on one machine, supervised.

:class:`Stack` starts PostgreSQL (embedded, or databases on a server you name), the
broker (embedded tansu, or one you name), prepares every service's database and the
topics, registers the service clients with auth, and then runs every service as its
own OS process (``python -m bazaar serve <service>``), the payment sandbox and, last,
the gateway in front of them. A child that dies unexpectedly is reported and started
again with a growing delay. :meth:`Stack.stop` drains in order: the gateway first,
then the services, then the broker and PostgreSQL, leaving no process behind.

Tests and benchmarks use it directly; ``bazaar up`` is a thin command around it::

    async with Stack(tmp_path, port=0, postgres_url="postgresql://…/postgres") as stack:
        httpx.get(f"{stack.gateway_url}/api/health")
        await stack.kill("catalog", 1)           # stays down
        await stack.start_replica("catalog", 1)  # back, healthy
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar
from urllib.parse import unquote

import httpx
import psutil  # type: ignore[import-untyped]
from sqlalchemy.engine import URL

from bazaar.contracts.topics import ALL_TOPICS
from bazaar.kit.config import PlatformSettings
from bazaar.kit.db import async_url, drop_database
from bazaar.kit.messaging.kafka import ensure_topics
from bazaar.stack.broker import EmbeddedBroker
from bazaar.stack.console import ConsoleOutput
from bazaar.stack.credentials import load_client_secrets, signing_key_passphrase
from bazaar.stack.datadir import (
    EMBEDDED_DATABASE_PREFIX,
    LOCK_FILE,
    PG_DIR,
    STATE_FILE,
    database_name,
)
from bazaar.stack.ports import free_port, port_open
from bazaar.stack.postgres import EmbeddedPostgres
from bazaar.stack.processes import ManagedProcess, ProcessFailed, StackOutput
from bazaar.stack.provisioning import prepare_databases, register_service_clients
from bazaar.stack.services import GATEWAY, PSP_SANDBOX, SERVICES, ServiceSpec, spec_named

T = TypeVar("T")

HOST = "127.0.0.1"
# Drain budget: the whole of stop() stays well under 30 s.
GATEWAY_DRAIN_SECONDS = 8.0
SERVICE_DRAIN_SECONDS = 10.0


class StackError(RuntimeError):
    """The stack cannot start as asked (a port taken, a data directory in use, …)."""


class Stack:
    """The platform on one machine: databases, broker and every service as a supervised process.

    ``port`` / ``psp_port``: 0 picks a free port. ``replicas``: service name → count
    (default 1 each). ``postgres_url``: an admin URL of an external server; the databases
    are then named ``<database_prefix>_<service>`` (default prefix derived from the data
    directory) instead of ``bazaar_<service>`` on the embedded server. ``broker``: an
    :class:`EmbeddedBroker` the caller runs, or a bootstrap string; None starts one.
    ``env``: extra environment for every child (applied over the platform's settings,
    under each service's own host, port, database and credentials).
    """

    def __init__(
        self,
        data_dir: str | Path,
        *,
        port: int = 8000,
        replicas: Mapping[str, int] | None = None,
        postgres_url: str | URL | None = None,
        broker: EmbeddedBroker | str | None = None,
        env: Mapping[str, str] | None = None,
        psp_port: int = 8099,
        services: Sequence[ServiceSpec] = SERVICES,
        database_prefix: str | None = None,
        log_level: str = "INFO",
        output: StackOutput | None = None,
        startup_timeout: float = 90.0,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.services = tuple(services)
        known = {spec.name for spec in self.services}
        replicas = dict(replicas or {})
        unknown = sorted(set(replicas) - known)
        if unknown:
            raise StackError(
                f"unknown service(s) for replicas: {', '.join(unknown)} "
                f"(known: {', '.join(sorted(known))})"
            )
        if any(count < 1 for count in replicas.values()):
            raise StackError("every service needs at least 1 replica")
        self.replica_counts = {spec.name: replicas.get(spec.name, 1) for spec in self.services}
        self.requested_port = port
        self.requested_psp_port = psp_port
        self.extra_env = dict(env or {})
        self.log_level = log_level
        self.output: StackOutput = output or ConsoleOutput()
        self.startup_timeout = startup_timeout

        self._external_postgres = async_url(postgres_url) if postgres_url is not None else None
        if database_prefix is None:
            database_prefix = (
                EMBEDDED_DATABASE_PREFIX
                if self._external_postgres is None
                else "bazaar_" + hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:8]
            )
        self.database_prefix = database_prefix
        self._given_broker = broker
        self._postgres: EmbeddedPostgres | None = None
        self._broker: EmbeddedBroker | None = broker if isinstance(broker, EmbeddedBroker) else None
        self._owns_broker = broker is None

        self.admin_url: URL | None = None
        self.database_urls: dict[str, URL] = {}
        self.client_secrets: dict[str, str] = {}
        self.signing_key_passphrase = ""
        self.processes: dict[str, list[ManagedProcess]] = {}
        self.gateway_port = 0
        self.psp_port = 0
        self.startup_seconds: float | None = None
        self.shutdown_seconds: float | None = None
        self._lock_file: IO[str] | None = None
        self._http: httpx.AsyncClient | None = None
        # Blocking starts running in worker threads: stop() waits for them, so that a
        # start cancelled half-way (Ctrl-C) cannot leave a server running behind it.
        self._threads: list[asyncio.Future[Any]] = []
        self._started = False
        self._stopping = False
        self._stopped = asyncio.Event()

    # --- what the stack offers ----------------------------------------------------------

    @property
    def gateway_url(self) -> str:
        return f"http://{HOST}:{self.gateway_port}"

    @property
    def psp_url(self) -> str:
        return f"http://{HOST}:{self.psp_port}"

    @property
    def bootstrap_servers(self) -> str:
        if self._broker is not None:
            return self._broker.bootstrap_servers
        if isinstance(self._given_broker, str):
            return self._given_broker
        raise StackError("the stack has no broker yet (not started)")

    @property
    def broker(self) -> EmbeddedBroker | None:
        """The embedded broker (None when the stack uses one named by a bootstrap string)."""
        return self._broker

    @property
    def postgres(self) -> EmbeddedPostgres | None:
        """The embedded PostgreSQL server (None with an external server)."""
        return self._postgres

    @property
    def postgres_display_url(self) -> str:
        """The admin URL as ``psql`` takes it (no driver, password hidden)."""
        assert self.admin_url is not None, "the stack is not started"
        url = self.admin_url
        # The embedded server trusts its socket: no password to hide, none to show.
        shown = URL.create(
            "postgresql",
            username=url.username,
            password=url.password or None,
            host=url.host,
            port=url.port,
            database=url.database,
            query=url.query,
        )
        return unquote(shown.render_as_string(hide_password=True))

    def database_url(self, service: str) -> URL:
        """The asyncpg URL of ``service``'s database (with its password)."""
        return self.database_urls[service]

    def replicas(self, service: str) -> list[ManagedProcess]:
        """The processes of ``service`` (``gateway`` and ``psp_sandbox`` too), replica 1 first."""
        try:
            return self.processes[service.replace("-", "_")]
        except KeyError:
            raise KeyError(
                f"no such service in this stack: {service!r} (has: {', '.join(self.processes)})"
            ) from None

    def replica(self, service: str, replica: int = 1) -> ManagedProcess:
        processes = self.replicas(service)
        if not 1 <= replica <= len(processes):
            raise KeyError(f"{service} has replicas 1..{len(processes)}, not {replica}")
        return processes[replica - 1]

    def all_processes(self) -> list[ManagedProcess]:
        return [process for group in self.processes.values() for process in group]

    def endpoints(self) -> list[tuple[str, str]]:
        """What ``bazaar up`` prints: label → URL, the public ones first."""
        rows = [
            ("Gateway", self.gateway_url),
            ("API docs", f"{self.gateway_url}/api/docs"),
            ("OpenAPI", f"{self.gateway_url}/api/openapi.json"),
            ("Health", f"{self.gateway_url}/api/health"),
        ]
        for spec in self.services:
            for process in self.processes.get(spec.name, []):
                rows.append((process.name, process.url))
        rows.append(("PSP sandbox", self.psp_url))
        rows.append(("PostgreSQL", self.postgres_display_url))
        rows.append(("Broker", self.bootstrap_servers))
        rows.append(("Data directory", str(self.data_dir)))
        return rows

    # --- starting -----------------------------------------------------------------------

    async def __aenter__(self) -> Stack:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Bring everything up and return when every process answers its health checks."""
        if self._started:
            raise StackError("this stack was started already")
        self._started = True
        began = time.monotonic()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_data_dir()
        try:
            self._end_stale_run()
            self._claim_public_ports()
            await asyncio.gather(self._start_postgres(), self._start_broker())
            self._write_state()
            await asyncio.gather(self._prepare_databases(), self._create_topics())
            self._check_not_stopping()
            await self._register_clients()
            self._build_processes()
            self._http = httpx.AsyncClient()
            # The sandbox and the services together, the gateway once they answer.
            await self._start_processes([*self._service_processes(), *self.replicas("psp_sandbox")])
            await self._start_processes(self.replicas("gateway"))
            self._check_not_stopping()
            for process in self.all_processes():
                process.supervised = True
            self.startup_seconds = time.monotonic() - began
            self._write_state()
            self.output.event(f"every process is healthy ({self.startup_seconds:.1f}s)")
        except BaseException:
            await self.stop()
            raise

    def _check_not_stopping(self) -> None:
        """A start racing a stop (Ctrl-C during start-up) must not start anything more."""
        if self._stopping:
            raise StackError("the stack was stopped while it was starting")

    def _lock_data_dir(self) -> None:
        lock = (self.data_dir / LOCK_FILE).open("w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise StackError(
                f"another bazaar stack is running on {self.data_dir} "
                "(stop it, or use another --data-dir)"
            ) from None
        self._lock_file = lock

    def _end_stale_run(self) -> None:
        """End what a previous supervisor of this data directory left running.

        Its lock is ours now, so it is gone (SIGKILL, a crash) and its ``stack.json``
        is stale. Its services exit by themselves when it dies; its broker does not.
        Its PostgreSQL is simply attached to again.
        """
        path = self.data_dir / STATE_FILE
        if not path.exists():
            return
        try:
            state = json.loads(path.read_text())
        except ValueError:
            state = {}
        supervisor = str(state.get("supervisor_pid"))
        broker = f"tcp://{state.get('bootstrap_servers')}"
        pids = [state.get("broker_pid")]
        pids += [entry.get("pid") for entry in state.get("processes", {}).values()]
        for pid in pids:
            if not isinstance(pid, int):
                continue
            try:
                process = psutil.Process(pid)
                cmdline = " ".join(process.cmdline())
                # A pid may have been reused since: only what is provably that run's.
                ours = ("tansu" in cmdline and broker in cmdline) or (
                    " serve " in cmdline
                    and process.environ().get("BAZAAR_SUPERVISOR_PID") == supervisor
                )
                if ours:
                    self.output.event(
                        f"ending pid {pid} left by a previous run: {cmdline[:80]}",
                        level="warning",
                    )
                    process.kill()
            except psutil.Error:
                continue
        path.unlink(missing_ok=True)

    def _claim_public_ports(self) -> None:
        self.gateway_port = self.requested_port or free_port(HOST)
        self.psp_port = self.requested_psp_port or free_port(HOST)
        for what, port in (("gateway", self.gateway_port), ("payment sandbox", self.psp_port)):
            if port_open(HOST, port):
                raise StackError(
                    f"port {port} (for the {what}) is already in use: is another bazaar up "
                    "running? Choose another port."
                )

    async def _start_postgres(self) -> None:
        if self._external_postgres is not None:
            self.admin_url = self._external_postgres
            return
        self._postgres = EmbeddedPostgres(self.data_dir / PG_DIR)
        started = time.monotonic()
        self.admin_url = await self._in_thread(self._postgres.start)
        self.output.event(
            f"PostgreSQL ready on {self.postgres_display_url} "
            f"(pid {self._postgres.pid}, {time.monotonic() - started:.1f}s)"
        )

    async def _start_broker(self) -> None:
        if self._owns_broker:
            self._broker = EmbeddedBroker()
            await self._in_thread(self._broker.start)
            self.output.event(f"broker (tansu) ready on {self._broker.bootstrap_servers}")

    async def _in_thread(self, function: Callable[[], T]) -> T:
        future = asyncio.ensure_future(asyncio.to_thread(function))
        self._threads.append(future)
        return await asyncio.shield(future)

    def platform_settings(self) -> PlatformSettings:
        """The platform settings every child gets (built from the same environment)."""
        env = {**self._platform_env(), **self.extra_env}
        return PlatformSettings(
            kafka_bootstrap_servers=env["BAZAAR_KAFKA_BOOTSTRAP_SERVERS"],
            topic_prefix=env.get("BAZAAR_TOPIC_PREFIX", os.environ.get("BAZAAR_TOPIC_PREFIX", "")),
        )

    async def _create_topics(self) -> None:
        await ensure_topics(self.platform_settings(), ALL_TOPICS)

    async def _prepare_databases(self) -> None:
        assert self.admin_url is not None
        started = time.monotonic()
        names = {
            spec.name: database_name(self.database_prefix, spec.name) for spec in self.services
        }
        self.database_urls = await prepare_databases(self.admin_url, names, self.services)
        migrated = ", ".join(url.database or "" for url in self.database_urls.values())
        self.output.event(f"databases migrated: {migrated} ({time.monotonic() - started:.1f}s)")

    async def _register_clients(self) -> None:
        clients = [spec.name for spec in (*self.services, GATEWAY) if spec.client]
        self.client_secrets = load_client_secrets(self.data_dir, clients)
        self.signing_key_passphrase = signing_key_passphrase(self.data_dir)
        if "auth" in self.database_urls:
            await register_service_clients(self.database_urls["auth"], self.client_secrets)

    # --- the children -------------------------------------------------------------------

    def _platform_env(self) -> dict[str, str]:
        return {
            "BAZAAR_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "BAZAAR_GATEWAY_URL": self.gateway_url,
            "BAZAAR_JWKS_URL": f"{self.gateway_url}/api/auth/jwks.json",
            "BAZAAR_LOG_FORMAT": "console",
            "BAZAAR_LOG_LEVEL": self.log_level,
            "BAZAAR_PSP_SANDBOX_URL": self.psp_url,
            # tansu makes a consumer wait about half the session timeout to join its group.
            "BAZAAR_KAFKA_SESSION_TIMEOUT_MS": "3000",
            "BAZAAR_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
            # Children exit when this process goes away, even by SIGKILL.
            "BAZAAR_SUPERVISOR_PID": str(os.getpid()),
            "PYTHONUNBUFFERED": "1",
        }

    def _child_env(self, spec: ServiceSpec, port: int) -> dict[str, str]:
        env = {**os.environ, **self._platform_env(), **self.extra_env}
        prefix = spec.env_prefix
        env[f"{prefix}HOST"] = HOST
        env[f"{prefix}PORT"] = str(port)
        if spec.database:
            env[f"{prefix}DATABASE_URL"] = self.database_urls[spec.name].render_as_string(
                hide_password=False
            )
        if spec.client:
            env[f"{prefix}CLIENT_ID"] = spec.name
            env[f"{prefix}CLIENT_SECRET"] = self.client_secrets[spec.name]
        if spec.name == "auth":
            env[f"{prefix}SIGNING_KEY_PASSPHRASE"] = self.signing_key_passphrase
        values = {
            "gateway_url": self.gateway_url,
            "psp_url": self.psp_url,
            "data_dir": str(self.data_dir),
        }
        for name, value in spec.env.items():
            env[f"{prefix}{name}"] = value.format(**values)
        if spec is GATEWAY:
            env[f"{prefix}UPSTREAMS"] = json.dumps(self.upstreams())
        return env

    def upstreams(self) -> dict[str, list[str]]:
        """The gateway's pools: each service's replica URLs."""
        return {
            spec.name: [process.url for process in self.processes.get(spec.name, [])]
            for spec in self.services
        }

    def _command(self, spec: ServiceSpec) -> list[str]:
        command = [sys.executable, "-m", "bazaar", "serve", spec.name]
        try:
            registered = spec_named(spec.name)
        except KeyError:
            registered = None
        if registered is None or (registered.factory, registered.kind) != (spec.factory, spec.kind):
            # Not the registry's own line (a test's or a tool's): name the app explicitly.
            command += ["--app", spec.factory, "--kind", spec.kind]
        return command

    def _build_processes(self) -> None:
        self.processes = {}
        for spec in self.services:
            self.processes[spec.name] = [
                self._process(spec, n, free_port(HOST))
                for n in range(1, self.replica_counts[spec.name] + 1)
            ]
        self.processes[PSP_SANDBOX.name] = [self._process(PSP_SANDBOX, 1, self.psp_port)]
        self.processes[GATEWAY.name] = [self._process(GATEWAY, 1, self.gateway_port)]
        # Environments need every port (the gateway's upstreams), so they come second.
        for process in self.all_processes():
            process.env = self._child_env(process.spec, process.port)

    def _process(self, spec: ServiceSpec, replica: int, port: int) -> ManagedProcess:
        return ManagedProcess(
            spec,
            replica,
            port,
            self._command(spec),
            {},
            self.output,
            on_spawn=lambda _: self._write_state(),
        )

    def _service_processes(self) -> list[ManagedProcess]:
        return [process for spec in self.services for process in self.processes[spec.name]]

    async def _start_processes(self, processes: Sequence[ManagedProcess]) -> None:
        self._check_not_stopping()
        for process in processes:
            process.start()
            self.output.event(f"started {process.name} (pid {process.pid}) on {process.url}")
        await self._wait_healthy(processes, self.startup_timeout)

    async def _wait_healthy(self, processes: Sequence[ManagedProcess], timeout: float) -> None:
        assert self._http is not None, "the stack is not started"
        await asyncio.gather(*(process.wait_healthy(self._http, timeout) for process in processes))

    async def wait_healthy(self, service: str | None = None, timeout: float = 30.0) -> None:
        """Wait until every process (of ``service``) answers its health checks."""
        processes = self.all_processes() if service is None else self.replicas(service)
        await self._wait_healthy(processes, timeout)

    async def kill(
        self,
        service: str,
        replica: int = 1,
        sig: int = signal.SIGKILL,
        *,
        restart: bool = False,
        timeout: float = 30.0,
    ) -> ManagedProcess:
        """Send ``sig`` to a replica's process group and wait (up to ``timeout``) for its exit.

        ``restart=False``: it stays down until :meth:`start_replica`. ``restart=True``:
        a crash; the supervisor reports it and starts it again (see :meth:`wait_healthy`).
        """
        process = self.replica(service, replica)
        await process.kill(sig, restart=restart, timeout=timeout)
        return process

    async def start_replica(
        self, service: str, replica: int = 1, timeout: float = 30.0
    ) -> ManagedProcess:
        """Start a replica that is down (no-op when it runs) and wait until it is healthy."""
        process = self.replica(service, replica)
        process.start()
        process.supervised = True
        assert self._http is not None, "the stack is not started"
        await process.wait_healthy(self._http, timeout)
        return process

    async def restart(
        self, service: str, replica: int | None = None, timeout: float = 30.0
    ) -> None:
        """Gracefully restart one replica, or all of ``service``'s one after the other."""
        processes = self.replicas(service) if replica is None else [self.replica(service, replica)]
        for process in processes:
            await process.stop(SERVICE_DRAIN_SECONDS)
            await self.start_replica(service, process.replica, timeout)

    async def restart_broker(self) -> None:
        """Restart the embedded broker on the same port: it forgets every topic and message."""
        if self._broker is None:
            raise StackError("the stack uses an external broker; it cannot restart it")
        await asyncio.to_thread(self._broker.restart)
        await self._create_topics()
        self.output.event(f"broker restarted on {self._broker.bootstrap_servers}", level="warning")

    async def drop_databases(self) -> None:
        """Drop the services' databases (for throwaway stacks on an external server)."""
        assert self.admin_url is not None, "the stack was never started"
        for spec in self.services:
            if spec.database:
                await drop_database(self.admin_url, database_name(self.database_prefix, spec.name))

    # --- stopping -----------------------------------------------------------------------

    def kill_all(self) -> None:
        """SIGKILL every child at once (a second Ctrl-C): stop() then finishes quickly."""
        for process in self.all_processes():
            process.wanted = False
            process.send_signal(signal.SIGKILL)

    async def stop(self) -> None:
        """Drain: the gateway, then the services and the sandbox, then broker and PostgreSQL."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        began = time.monotonic()
        try:
            for pending in self._threads:
                with contextlib.suppress(Exception):
                    await pending
            for process in self.all_processes():
                process.supervised = False
            gateway = self.processes.get(GATEWAY.name, [])
            await asyncio.gather(*(process.stop(GATEWAY_DRAIN_SECONDS) for process in gateway))
            others = [p for p in self.all_processes() if p.spec is not GATEWAY]
            await asyncio.gather(*(process.stop(SERVICE_DRAIN_SECONDS) for process in others))
            if self._http is not None:
                await self._http.aclose()
                self._http = None
            if self._owns_broker and self._broker is not None:
                await asyncio.to_thread(self._broker.stop, 3.0)
            if self._postgres is not None:
                await asyncio.to_thread(self._postgres.stop)
                self._postgres = None
        finally:
            with contextlib.suppress(FileNotFoundError):
                (self.data_dir / STATE_FILE).unlink()
            if self._lock_file is not None:
                self._lock_file.close()
                self._lock_file = None
            self.shutdown_seconds = time.monotonic() - began
            self._stopped.set()

    def _write_state(self) -> None:
        """``stack.json``: what runs where (rewritten whenever a pid changes), for other
        tools, for people, and for the next start after a crash (:meth:`_end_stale_run`)."""
        if self._stopping:
            return
        state: dict[str, Any] = {
            "supervisor_pid": os.getpid(),
            "ready": self.startup_seconds is not None,
            "gateway_url": self.gateway_url,
            "psp_url": self.psp_url,
            "postgres_url": self.postgres_display_url if self.admin_url else None,
            "postgres_pid": None if self._postgres is None else self._postgres.pid,
            "bootstrap_servers": self.bootstrap_servers,
            # Only a broker of our own: the next start may end it if we die.
            "broker_pid": self._broker.pid if self._owns_broker and self._broker else None,
            "processes": {
                process.name: {"pid": process.pid, "url": process.url}
                for process in self.all_processes()
                if process.pid is not None
            },
        }
        path = self.data_dir / STATE_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(state, indent=2) + "\n")
        temporary.replace(path)


__all__ = ["ProcessFailed", "Stack", "StackError"]
