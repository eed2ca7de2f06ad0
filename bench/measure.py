"""Load and what it costs: wrk runs, CPU time of server processes, pinning, Debian tools.

Shared by the benchmarks that load an HTTP server: :class:`Wrk` runs ``wrk`` with a
Lua script that sets the headers (a token) and reports the request count and wrk's
own latency percentiles as JSON; :func:`cpu_seconds` samples the user + system time
of server processes (psutil), which divided by the requests served gives a cost per
request that does not swing with the neighbours' load the way requests/s does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import resource
import shutil
import socket
import statistics
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import psutil

WRK_SCRIPT = """\
wrk.method = "GET"
%(headers)s

done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    "BENCH_RESULT {\\"requests\\": %%d, \\"duration_us\\": %%d, \\"p50_us\\": %%d, " ..
    "\\"p99_us\\": %%d, \\"non_2xx\\": %%d, \\"socket_errors\\": %%d}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    errors.status, errors.connect + errors.read + errors.write + errors.timeout))
end
"""


def ensure_debian_package(binary: str, package: str) -> str:
    """The path of ``binary``, installing its Debian package first when it is missing."""
    found = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/sbin")
    if found:
        return found
    print(f"{binary} is missing: apt-get install {package}")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [*sudo, "apt-get", "install", "-y", "-q", "--no-install-recommends", package]
    if subprocess.run(install, env=environment, check=False).returncode != 0:
        subprocess.run([*sudo, "apt-get", "update", "-q"], env=environment, check=True)
        subprocess.run(install, env=environment, check=True)
    found = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/sbin")
    if not found:
        raise RuntimeError(f"{package} installed, but no {binary} found")
    return found


def tool_version(command: Sequence[str]) -> str:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    return (result.stdout + result.stderr).strip().splitlines()[0]


def set_affinity(pids: Sequence[int], cpus: str) -> None:
    """Pin every thread of ``pids`` and of their children to ``cpus`` (``taskset -a -p -c``)."""
    every = set(pids)
    for pid in pids:
        try:
            every.update(child.pid for child in psutil.Process(pid).children(recursive=True))
        except psutil.NoSuchProcess:
            continue
    for pid in sorted(every):
        subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(pid)], capture_output=True)


# --- processes and their CPU ---------------------------------------------------------------


def cpu_seconds(pids: Sequence[int]) -> dict[int, float]:
    """User + system CPU seconds of each live process of ``pids``."""
    times = {}
    for pid in pids:
        try:
            cpu = psutil.Process(pid).cpu_times()
        except psutil.Error:  # gone, or not ours to read
            continue
        times[pid] = cpu.user + cpu.system
    return times


def role_cpu_seconds(roles: Mapping[str, Sequence[int]]) -> dict[str, dict[int, float]]:
    """:func:`cpu_seconds` of each role's processes (role → pid → seconds)."""
    return {role: cpu_seconds(pids) for role, pids in roles.items()}


def cpu_used(
    before: Mapping[str, Mapping[int, float]], after: Mapping[str, Mapping[int, float]]
) -> dict[str, float]:
    """CPU seconds each role used between two :func:`role_cpu_seconds` samples, process by
    process: one started since counts whole, one gone since counts nothing (sample the
    pids of ``before`` again in ``after`` to keep those that live on)."""
    return {
        role: sum(value - before.get(role, {}).get(pid, 0.0) for pid, value in pids.items())
        for role, pids in after.items()
    }


def with_children(pid: int) -> list[int]:
    try:
        return [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


PidSource = Callable[[], Awaitable[list[int]]]


def fixed(*pids: int | None) -> PidSource:
    async def source() -> list[int]:
        return [pid for pid in pids if pid is not None]

    return source


def tree(pid: int) -> PidSource:
    async def source() -> list[int]:
        return with_children(pid)

    return source


@contextlib.asynccontextmanager
async def scratch_database(admin_dsn: str, prefix: str) -> AsyncIterator[str]:
    """A database of its own (named ``prefix`` and a random tail) on ``admin_dsn``'s
    server, for a measurement's tables; its URL, and it is dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base, _, _ = admin_dsn.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        admin = await asyncpg.connect(admin_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


class PostgresBackends:
    """The server processes serving some databases, for their CPU time."""

    def __init__(self, admin_dsn: str, *databases: str) -> None:
        self.admin_dsn = admin_dsn
        self.databases = list(databases)
        self._connection: Any = None

    async def pids(self) -> list[int]:
        if self._connection is None:
            self._connection = await asyncpg.connect(self.admin_dsn, timeout=5)
        rows = await self._connection.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = ANY($1::text[])", self.databases
        )
        return [int(row["pid"]) for row in rows]

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()


# --- offered load ------------------------------------------------------------------------


async def open_loop(
    rate: float,
    seconds: float,
    rng: random.Random,
    launch: Callable[[float], Coroutine[Any, Any, None]],
) -> int:
    """Open-loop Poisson arrivals at ``rate``/s for ``seconds``: at each one ``launch(late)``
    runs as a task of its own (``late``: seconds behind its due time), whether or not the
    earlier ones have ended; returns the number launched once every one has."""
    loop = asyncio.get_running_loop()
    running: set[asyncio.Task[None]] = set()
    begin = due = loop.time()
    launched = 0
    while True:
        due += rng.expovariate(rate)
        if due - begin >= seconds:
            break
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(launch(max(0.0, loop.time() - due)))
        running.add(task)
        task.add_done_callback(running.discard)
        launched += 1
    if running:
        await asyncio.gather(*running)
    return launched


# --- one measurement --------------------------------------------------------------------


@dataclass
class Wrk:
    binary: str
    script_dir: Path
    seconds: float
    cpus: str | None = None
    scripts: dict[str, Path] = field(default_factory=dict)

    def script(self, token: str) -> Path:
        """A Lua script sending ``Authorization: Bearer <token>`` (one file per token)."""
        if token not in self.scripts:
            path = self.script_dir / f"wrk-{len(self.scripts)}.lua"
            headers = {"Authorization": f"Bearer {token}"}
            path.write_text(
                WRK_SCRIPT
                % {
                    "headers": "\n".join(
                        f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}"
                        for name, value in headers.items()
                    )
                }
            )
            self.scripts[token] = path
        return self.scripts[token]

    def command(self, url: str, connections: int, token: str, seconds: float) -> list[str]:
        pin = ["taskset", "-c", self.cpus] if self.cpus else []
        return [
            *pin,
            *(
                self.binary,
                "-t1",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "10s",
            ),
            *("--latency", "-s", str(self.script(token)), url),
        ]

    def run(
        self, url: str, connections: int, token: str, seconds: float
    ) -> tuple[dict[str, Any], float]:
        """wrk's summary (from the Lua ``done``) and wrk's own CPU seconds."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        result = subprocess.run(
            self.command(url, connections, token, seconds),
            capture_output=True,
            text=True,
            check=False,
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        for line in result.stdout.splitlines():
            if line.startswith("BENCH_RESULT "):
                wrk_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
                return json.loads(line.removeprefix("BENCH_RESULT ")), wrk_cpu
        raise RuntimeError(f"wrk failed on {url}:\n{result.stdout}\n{result.stderr}")


def port_listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def spread(values: Sequence[float], digits: int = 0) -> str:
    """``median [min, max]``: the figure, and how far it moved between rounds."""
    if not values:
        return "-"
    middle = statistics.median(values)
    if len(values) == 1:
        return f"{middle:,.{digits}f}"
    return f"{middle:,.{digits}f} [{min(values):,.{digits}f}, {max(values):,.{digits}f}]"


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1), interpolated between the two nearest ranks; NaN for none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def nearest_rank(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) as the sample at rank ``int(n * q)``: an observed value,
    never between two; NaN for none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]
