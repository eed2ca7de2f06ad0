"""Orders per second from create to ``confirmed``, through the gateway, beside pgbench's limit.

One run on the real platform (``bazaar.stack.supervisor.Stack``: every service as its own
process, the gateway, the payment sandbox and a tansu broker; databases on the machine's
PostgreSQL). Many buyers, each with a 4242 card, order items with plenty of stock at a
rising offered load: open-loop (Poisson) arrivals at each ``--levels`` rate for
``--seconds``, a fresh task per order so a slow answer never holds the next one back.
Each level is left to drain (every order of it confirmed or cancelled, and every confirmed
one's stock committed) before the next.

When an order is ``confirmed`` is read from the broker, not by polling the API: an
observer (a consumer of its own, no group) reads ``bazaar.orders`` and the saga's answers
on ``bazaar.catalog`` and ``bazaar.payments``; an order's time to ``confirmed`` is the
``OrderConfirmed`` envelope's time (stamped by orders in the transaction that confirms it)
less the wall-clock start of the create request, on the same machine's clock. Polling
``GET /api/orders/{id}`` would add thousands of requests a second through the same
gateway, orders process and PostgreSQL the benchmark measures, and could not see an
order's state change more finely than its polling interval. The observer's own receive
time is reported too (what a reader of the topic sees, relay and broker included).

Per level: orders confirmed per second, p50/p99 of create→confirmed, the create
request's own time and the saga's share (create answered → confirmed), the saga's
steps (from the envelopes' times), whether every order reached a terminal state (and,
at the end, the orders database says so too), PostgreSQL commits per order, the CPU
time each process spent per order (psutil, user + system: it does not swing with the
neighbours' load the way rates do), and the support history's event-to-visible lag
(``recorded_at - occurred_at`` of the sagas' events in support's database).

Beside it, pgbench on a scratch database of the same server, before and after the
load: ``-c 8 -j 2`` clients doing one-row inserts (a transaction each), and the builtin
simple-update; its transactions per second are the commit rate the machine allows.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import math
import os
import random
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import psutil
from aiokafka import AIOKafkaConsumer, TopicPartition

from bazaar.contracts import catalog as catalog_contract
from bazaar.contracts import orders as orders_contract
from bazaar.contracts import payments as payments_contract
from bazaar.kit.db import asyncpg_dsn
from bazaar.kit.messaging.kafka import topic_name
from bazaar.stack.console import QuietOutput
from bazaar.stack.supervisor import Stack
from bench.harness import DEFAULT_POSTGRES_URL, Report, Table, postgres_version
from bench.measure import (
    cpu_used,
    open_loop,
    percentile,
    role_cpu_seconds,
    scratch_database,
    spread,
    with_children,
)

ADMIN_EMAIL = "bench-admin@bazaar.example.com"
ADMIN_PASSWORD = "bench-admin-password"
BUYER_PASSWORD = "bench-buyer-password"
APPROVES = "4242424242424242"
TERMINAL_TYPES = {orders_contract.OrderConfirmed.TYPE, orders_contract.OrderCancelled.TYPE}
TARGET_P99_MS = 150.0
TARGET_P99_AT = 100
TARGET_SUSTAINED = 250.0
# The saga's stages on the way to confirmed, each from the previous one's envelope time;
# "committed" (the stock's commit, PaymentSucceeded → StockCommitted) is measured from the
# charge: orders confirms a paid order in the move that sends the commit.
STEPS = ("create answered", "reserved", "charge sent", "charged", "confirmed")
COLUMNS = (*STEPS, "committed")
ROLES = (
    "gateway",
    "auth",
    "catalog",
    "orders",
    "payments",
    "psp_sandbox",
    "support",
    "auctions",
    "portal",
    "broker",
    "postgres",
    "benchmark",
)


# --- options ------------------------------------------------------------------------------


@dataclass
class Options:
    levels: list[int]
    seconds: float
    rounds: int
    buyers: int
    items: int
    drain_seconds: float
    database_url: str
    replicas: dict[str, int]
    env: dict[str, str]
    pool_size: int
    log_level: str
    pgbench_seconds: float
    profile: Path | None
    profile_level: int | None
    seed: int
    code_rev: str | None
    idle_seconds: float


def parse(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench orders", description=__doc__.split("\n")[0] if __doc__ else None
    )
    parser.add_argument(
        "--levels", default="50,100,200,300,400", help="offered orders/s, comma-separated"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="length of one level")
    parser.add_argument("--rounds", type=int, default=3, help="times the levels are run")
    parser.add_argument("--buyers", type=int, default=100)
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument(
        "--drain-seconds", type=float, default=180.0, help="wait for a level's orders to end"
    )
    parser.add_argument("--database-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument(
        "--replicas", default="", help="service=count,... (default: one of each, as bazaar up)"
    )
    parser.add_argument(
        "--env", action="append", default=[], help="NAME=value for every process (repeatable)"
    )
    parser.add_argument(
        "--pool-size",
        type=int,
        default=10,
        help="each service's database pool (its most connections): the server is shared",
    )
    parser.add_argument("--log-level", default="INFO", help="the services' log level")
    parser.add_argument("--pgbench-seconds", type=float, default=10.0)
    parser.add_argument("--profile", type=Path, help="py-spy every process into this folder")
    parser.add_argument("--profile-level", type=int, help="the level to profile (default: top)")
    parser.add_argument("--seed", type=int, default=4242)
    parser.add_argument(
        "--code-rev",
        help="run the platform's processes on src/ of this git revision (exported, put first "
        "on their PYTHONPATH), to compare a change with its base on the same machine",
    )
    parser.add_argument(
        "--idle-seconds", type=float, default=10.0, help="how long the idle stack is watched"
    )
    arguments = parser.parse_args(argv)
    if arguments.profile and shutil.which("py-spy") is None:
        parser.error("--profile needs py-spy on PATH (make install puts it in .venv/bin)")
    replicas = {}
    for part in filter(None, arguments.replicas.split(",")):
        name, _, count = part.partition("=")
        replicas[name.strip()] = int(count)
    env = {}
    for pair in arguments.env:
        name, _, value = pair.partition("=")
        env[name] = value
    levels = [int(level) for level in arguments.levels.split(",") if level.strip()]
    return Options(
        levels=levels,
        seconds=arguments.seconds,
        rounds=max(1, arguments.rounds),
        buyers=arguments.buyers,
        items=arguments.items,
        drain_seconds=arguments.drain_seconds,
        database_url=arguments.database_url,
        replicas=replicas,
        env=env,
        pool_size=arguments.pool_size,
        log_level=arguments.log_level,
        pgbench_seconds=arguments.pgbench_seconds,
        profile=arguments.profile,
        profile_level=arguments.profile_level or (max(levels) if arguments.profile else None),
        seed=arguments.seed,
        code_rev=arguments.code_rev,
        idle_seconds=arguments.idle_seconds,
    )


def main(argv: list[str]) -> Report:
    return asyncio.run(run(parse(argv)))


# --- pgbench --------------------------------------------------------------------------------

PGBENCH_INSERT = "INSERT INTO commit_probe (payload) VALUES ('one row, one commit');\n"


@dataclass
class Pgbench:
    label: str
    command: str
    tps: float
    latency_ms: float
    load1: float


async def run_pgbench(admin_url: str, seconds: float, when: str) -> list[Pgbench]:
    """pgbench on a scratch database of the server: one-row inserts, then simple-update."""
    binary = shutil.which("pgbench") or "/usr/lib/postgresql/15/bin/pgbench"
    server = re.match(
        r"postgresql://(?:(?P<user>[^@:]+)@)?(?P<host>[^:/]+):?(?P<port>\d*)", admin_url
    )
    assert server is not None
    connection = [
        "-h",
        server["host"],
        "-p",
        server["port"] or "5432",
        "-U",
        server["user"] or "postgres",
    ]
    results = []
    async with scratch_database(admin_url, "benchorders_pgbench") as scratch_url:
        name = scratch_url.rpartition("/")[2]
        scratch = await asyncpg.connect(scratch_url)
        try:
            await scratch.execute(
                "CREATE TABLE commit_probe (id bigserial PRIMARY KEY, payload text NOT NULL,"
                " at timestamptz NOT NULL DEFAULT now())"
            )
        finally:
            await scratch.close()
        with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
            script.write(PGBENCH_INSERT)
        await asyncio.to_thread(
            subprocess.run,
            [binary, *connection, "-i", "-s", "1", "-q", name],
            check=True,
            capture_output=True,
        )
        runs = [
            ("one-row insert", ["-f", script.name]),
            ("simple-update", ["-b", "simple-update"]),
        ]
        for label, workload in runs:
            command = [
                binary,
                *connection,
                *("-n", "-c", "8", "-j", "2", "-T", f"{seconds:g}"),
                *workload,
                name,
            ]
            load1 = os.getloadavg()[0]
            done = await asyncio.to_thread(
                subprocess.run, command, check=True, capture_output=True, text=True
            )
            tps = float(re.search(r"tps = ([\d.]+)", done.stdout)[1])  # type: ignore[index]
            latency = re.search(r"latency average = ([\d.]+) ms", done.stdout)
            shown = " ".join(
                part if part != script.name else "commit_probe.sql" for part in command[1:]
            )
            results.append(
                Pgbench(
                    label=f"{label} ({when})",
                    command=f"pgbench {shown}",
                    tps=tps,
                    latency_ms=float(latency[1]) if latency else math.nan,
                    load1=load1,
                )
            )
            print(f"pgbench {label} ({when}): {tps:,.0f} tps, load {load1:.2f}", flush=True)
        os.unlink(script.name)
    return results


# --- the observer: the saga's events, read from the broker ---------------------------------


@dataclass
class Seen:
    """What the observer read about one order (wall-clock seconds)."""

    created: float | None = None  # OrderCreated envelope time
    reserved: float | None = None
    charge_sent: float | None = None  # ChargePayment envelope time (orders' move)
    charged: float | None = None
    committed: float | None = None
    terminal: float | None = None  # OrderConfirmed / OrderCancelled envelope time
    terminal_received: float | None = None
    status: str | None = None


class Observer:
    """Reads the saga's topics from their current end, without a group, into ``seen``."""

    TYPES = {
        orders_contract.OrderCreated.TYPE: "created",
        catalog_contract.StockReserved.TYPE: "reserved",
        payments_contract.ChargePayment.TYPE: "charge_sent",
        payments_contract.PaymentSucceeded.TYPE: "charged",
        catalog_contract.StockCommitted.TYPE: "committed",
    }

    def __init__(self, stack: Stack) -> None:
        self.platform = stack.platform_settings()
        self.seen: dict[str, Seen] = {}
        self.terminal_count = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        topics = [
            topic_name(self.platform, topic)
            for topic in (
                orders_contract.TOPIC,
                catalog_contract.TOPIC,
                payments_contract.COMMANDS_TOPIC,
                payments_contract.TOPIC,
            )
        ]
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.platform.kafka_bootstrap_servers,
            enable_auto_commit=False,
            fetch_max_wait_ms=20,
        )
        await consumer.start()
        partitions = [
            TopicPartition(topic, number)
            for topic in topics
            for number in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        self._consumer = consumer
        self._task = asyncio.create_task(self._read(consumer))

    async def _read(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=50, max_records=2000)
            received = time.time()
            for records in batch.values():
                for record in records:
                    self._note(orjson.loads(record.value or b"{}"), received)

    def _note(self, envelope: dict[str, Any], received: float) -> None:
        kind = envelope.get("type")
        order_id = envelope.get("correlationid")
        if not order_id:
            return
        at = datetime.fromisoformat(envelope["time"]).timestamp()
        if kind in TERMINAL_TYPES:
            seen = self.seen.setdefault(order_id, Seen())
            if seen.terminal is None:
                self.terminal_count += 1
                seen.terminal = at
                seen.terminal_received = received
                seen.status = (
                    "confirmed" if kind == orders_contract.OrderConfirmed.TYPE else "cancelled"
                )
        elif kind in self.TYPES:
            seen = self.seen.setdefault(order_id, Seen())
            step = self.TYPES[kind]
            if getattr(seen, step) is None:
                setattr(seen, step, at)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()


# --- the load -------------------------------------------------------------------------------


@dataclass
class Buyer:
    token: str
    method_id: str


@dataclass
class Attempt:
    started: float  # wall clock, when the request left
    late: float  # how far behind its scheduled time the request left (s)
    answered: float = 0.0
    status: int = 0
    order_id: str | None = None


@dataclass
class Level:
    round: int
    offered: int
    seconds: float
    attempts: list[Attempt] = field(default_factory=list)
    load1: float = 0.0
    drained_in: float = 0.0
    commits: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # role → CPU seconds
    wall: float = 0.0
    support_lag: tuple[float, float, float, int] | None = None  # p50, p99, max (s), rows


async def prepare(
    http: aiohttp.ClientSession, gateway: str, buyers: int, items: int
) -> tuple[list[Buyer], list[str]]:
    """Items with plenty of stock (listed by the admin) and buyers with a 4242 card each."""

    async def login(email: str, password: str) -> str:
        async with http.post(
            f"{gateway}/api/auth/token",
            data={"grant_type": "password", "username": email, "password": password},
        ) as response:
            assert response.status == 200, await response.text()
            return str((await response.json())["access_token"])

    admin = {"Authorization": f"Bearer {await login(ADMIN_EMAIL, ADMIN_PASSWORD)}"}
    item_ids = []
    for number in range(items):
        async with http.post(
            f"{gateway}/api/catalog/items",
            json={
                "kind": "good",
                "title": f"Benchmark teapot {number}",
                "description": "Ordered many times a second.",
                "price": 1500 + number,
                "currency": "EUR",
                "stock": 100_000_000,
            },
            headers=admin,
        ) as response:
            assert response.status == 201, await response.text()
            item_ids.append(str((await response.json())["id"]))

    gate = asyncio.Semaphore(8)

    async def buyer(number: int) -> Buyer:
        async with gate:
            email = f"bench-buyer-{number}-{uuid.uuid4().hex[:8]}@bazaar.example.com"
            async with http.post(
                f"{gateway}/api/auth/register",
                json={"email": email, "password": BUYER_PASSWORD, "display_name": "Buyer"},
            ) as response:
                assert response.status == 201, await response.text()
            token = await login(email, BUYER_PASSWORD)
            async with http.post(
                f"{gateway}/api/payments/methods",
                json={"card_number": APPROVES, "exp_month": 12, "exp_year": 2040, "cvc": "123"},
                headers={"Authorization": f"Bearer {token}"},
            ) as response:
                assert response.status == 201, await response.text()
                return Buyer(token, str((await response.json())["id"]))

    return list(await asyncio.gather(*(buyer(n) for n in range(buyers)))), item_ids


async def offer(
    http: aiohttp.ClientSession,
    gateway: str,
    buyers: list[Buyer],
    items: list[str],
    rate: int,
    seconds: float,
    rng: random.Random,
) -> list[Attempt]:
    """Open-loop Poisson arrivals at ``rate``/s for ``seconds``; every order its own task."""
    attempts: list[Attempt] = []

    async def create(attempt: Attempt, buyer: Buyer, item_id: str) -> None:
        try:
            async with http.post(
                f"{gateway}/api/orders",
                json={
                    "items": [{"item_id": item_id, "quantity": 1}],
                    "payment_method_id": buyer.method_id,
                },
                headers={"Authorization": f"Bearer {buyer.token}"},
            ) as response:
                body = await response.read()
                attempt.answered = time.time()
                attempt.status = response.status
                if response.status == 201:
                    attempt.order_id = str(orjson.loads(body)["id"])
        except (aiohttp.ClientError, TimeoutError):
            attempt.answered = time.time()
            attempt.status = -1

    def launch(late: float) -> Coroutine[Any, Any, None]:
        # Buyer and item are drawn at the arrival, in the arrivals' order.
        attempt = Attempt(started=time.time(), late=late)
        buyer = buyers[len(attempts) % len(buyers)]
        attempts.append(attempt)
        return create(attempt, buyer, items[rng.randrange(len(items))])

    await open_loop(rate, seconds, rng, launch)
    return attempts


# --- what each process spent -----------------------------------------------------------------


class Processes:
    """The pids of every role (service processes with their children, the broker,
    PostgreSQL's backends of the stack's databases, this process)."""

    def __init__(self, stack: Stack, admin_dsn: str) -> None:
        self.stack = stack
        self.admin_dsn = admin_dsn
        self.prefix = stack.database_prefix

    async def pids(self) -> dict[str, list[int]]:
        roles: dict[str, list[int]] = {role: [] for role in ROLES}
        for process in self.stack.all_processes():
            if process.pid is not None:
                roles.setdefault(process.service, []).extend(with_children(process.pid))
        broker = self.stack.broker
        if broker is not None and broker.pid is not None:
            roles["broker"] = with_children(broker.pid)
        connection = await asyncpg.connect(self.admin_dsn)
        try:
            rows = await connection.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname LIKE $1", f"{self.prefix}%"
            )
        finally:
            await connection.close()
        roles["postgres"] = [int(row["pid"]) for row in rows]
        roles["benchmark"] = [os.getpid()]
        return roles

    async def commits(self) -> int:
        connection = await asyncpg.connect(self.admin_dsn)
        try:
            return int(
                await connection.fetchval(
                    "SELECT coalesce(sum(xact_commit), 0) FROM pg_stat_database"
                    " WHERE datname LIKE $1",
                    f"{self.prefix}%",
                )
            )
        finally:
            await connection.close()


# --- one level --------------------------------------------------------------------------------


async def run_level(
    http: aiohttp.ClientSession,
    stack: Stack,
    observer: Observer,
    processes: Processes,
    buyers: list[Buyer],
    items: list[str],
    options: Options,
    *,
    round_number: int,
    rate: int,
    rng: random.Random,
) -> Level:
    level = Level(round=round_number, offered=rate, seconds=options.seconds)
    level.load1 = os.getloadavg()[0]
    pids = await processes.pids()
    cpu_before = role_cpu_seconds(pids)
    commits_before = await processes.commits()
    began = time.monotonic()
    profiling = (
        start_profiles(options.profile, pids, rate, round_number, options.seconds)
        if options.profile is not None and rate == options.profile_level and round_number == 1
        else []
    )
    level.attempts = await offer(http, stack.gateway_url, buyers, items, rate, options.seconds, rng)
    created = [attempt.order_id for attempt in level.attempts if attempt.order_id]
    level.drained_in = await drained(observer, created, options.drain_seconds)
    level.wall = time.monotonic() - began
    for spy in profiling:
        with contextlib.suppress(subprocess.TimeoutExpired):
            spy.wait(timeout=30)
    # pg_stat_database is flushed by each backend at most once a second.
    await asyncio.sleep(1.2)
    level.commits = await processes.commits() - commits_before
    after = role_cpu_seconds(
        {role: sorted({*pids[role], *new}) for role, new in (await processes.pids()).items()}
    )
    level.cpu = cpu_used(cpu_before, after)
    level.support_lag = await support_lag(stack, created)
    terminal = sum(1 for order_id in created if observer.seen.get(order_id, Seen()).terminal)
    confirmed = [
        observer.seen[o] for o in created if observer.seen.get(o, Seen()).status == "confirmed"
    ]
    totals = sorted(
        seen.terminal - attempt.started  # type: ignore[operator]
        for attempt in level.attempts
        if attempt.order_id
        and (seen := observer.seen.get(attempt.order_id))
        and seen.status == "confirmed"
    )
    p99 = percentile(totals, 0.99) * 1000 if totals else math.nan
    print(
        f"round {round_number}  offered {rate:>4}/s  created {len(created):>5}  "
        f"terminal {terminal:>5}  confirmed {len(confirmed):>5}  "
        f"p50 {percentile(totals, 0.5) * 1000 if totals else math.nan:7.1f} ms  p99 {p99:7.1f} ms  "
        f"drained in {level.drained_in:5.1f} s  load {level.load1:.2f}",
        flush=True,
    )
    await asyncio.sleep(2.0)
    return level


async def drained(observer: Observer, order_ids: list[str], timeout: float) -> float:
    """Wait (up to ``timeout``) until every order is seen confirmed or cancelled, and every
    confirmed one's stock committed (the saga's last message, so that the level's CPU
    figures hold all of its work); how long."""

    def ended(seen: Seen) -> bool:
        return seen.terminal is not None and (
            seen.status != "confirmed" or seen.committed is not None
        )

    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if all(ended(observer.seen.get(order_id, Seen())) for order_id in order_ids):
            break
        await asyncio.sleep(0.05)
    return time.monotonic() - began


async def support_lag(stack: Stack, order_ids: list[str]) -> tuple[float, float, float, int] | None:
    """Event-to-visible lag in support's history of every message of these orders' sagas,
    once the history has their terminal events (or after 30 s)."""
    if "support" not in stack.database_urls or not order_ids:
        return None
    connection = await asyncpg.connect(asyncpg_dsn(stack.database_url("support")))
    try:
        deadline = time.monotonic() + 30
        previous = -1
        while time.monotonic() < deadline:
            count = await connection.fetchval(
                "SELECT count(*) FROM events WHERE correlation_id = ANY($1::text[])", order_ids
            )
            ended = await connection.fetchval(
                "SELECT count(*) FROM events WHERE correlation_id = ANY($1::text[])"
                " AND type = ANY($2::text[])",
                order_ids,
                sorted(TERMINAL_TYPES),
            )
            if ended >= len(order_ids) and count == previous:
                break
            previous = count
            await asyncio.sleep(0.5)
        row = await connection.fetchrow(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY lag) AS p50,"
            " percentile_cont(0.99) WITHIN GROUP (ORDER BY lag) AS p99, max(lag) AS worst,"
            " count(*) AS rows FROM (SELECT extract(epoch FROM recorded_at - occurred_at) AS lag"
            " FROM events WHERE correlation_id = ANY($1::text[])) AS lags",
            order_ids,
        )
    finally:
        await connection.close()
    if row is None or not row["rows"]:
        return None
    return float(row["p50"]), float(row["p99"]), float(row["worst"]), int(row["rows"])


def start_profiles(
    folder: Path, pids: dict[str, list[int]], rate: int, round_number: int, seconds: float
) -> list[subprocess.Popen[bytes]]:
    """py-spy (collapsed stacks) of every Python process of the platform for one level."""
    folder.mkdir(parents=True, exist_ok=True)
    spies = []
    for role, role_pids in pids.items():
        if role in ("broker", "postgres", "benchmark"):
            continue
        for pid in role_pids:
            with contextlib.suppress(psutil.Error):
                if "python" not in psutil.Process(pid).name():
                    continue
            output = folder / f"{role}-{pid}-{rate}.txt"
            spies.append(
                subprocess.Popen(
                    [
                        *("py-spy", "record", "--pid", str(pid), "--rate", "200"),
                        *("--duration", f"{seconds:.0f}", "--format", "raw", "--nonblocking"),
                        *("--output", str(output)),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
    print(f"profiling {len(spies)} processes into {folder}", flush=True)
    return spies


# --- the run -----------------------------------------------------------------------------------


async def run(options: Options) -> Report:
    admin_dsn = options.database_url.replace("postgresql+asyncpg://", "postgresql://")
    version = await postgres_version(admin_dsn)
    if version is None:
        raise SystemExit(f"no PostgreSQL answers at {admin_dsn}: the benchmark needs the machine's")
    pgbench = await run_pgbench(admin_dsn, options.pgbench_seconds, "before")
    rng = random.Random(options.seed)
    with tempfile.TemporaryDirectory(prefix="bazaar-bench-orders-") as temporary:
        code = export_source(options.code_rev, Path(temporary)) if options.code_rev else None
        stack = Stack(
            Path(temporary) / "stack",
            port=0,
            psp_port=0,
            replicas=options.replicas,
            postgres_url=admin_dsn,
            database_prefix=f"benchorders_{uuid.uuid4().hex[:6]}",
            env={
                "BAZAAR_BOOTSTRAP_ADMIN_EMAIL": ADMIN_EMAIL,
                "BAZAAR_BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD,
                "BAZAAR_AUTH_ACCESS_TOKEN_TTL_SECONDS": "14400",
                # Still argon2id, at OWASP's minimum cost: the benchmark registers its buyers.
                "BAZAAR_AUTH_ARGON2_TIME_COST": "2",
                "BAZAAR_AUTH_ARGON2_MEMORY_COST_KIB": "19456",
                "BAZAAR_AUTH_ARGON2_PARALLELISM": "1",
                # As in production: JSON lines (the stack's own default is a terminal's).
                "BAZAAR_LOG_FORMAT": "json",
                **({"PYTHONPATH": str(code)} if code else {}),
                **{
                    f"BAZAAR_{service.upper()}_DATABASE_POOL_SIZE": str(options.pool_size)
                    for service in ("auth", "catalog", "orders", "payments", "auctions", "support")
                },
                **options.env,
            },
            log_level=options.log_level,
            output=QuietOutput(),
        )
        levels: list[Level] = []
        final: dict[str, int] = {}
        idle: tuple[dict[str, float], float] = ({}, 0.0)
        observer: Observer | None = None
        try:
            await stack.start()
            processes = Processes(stack, admin_dsn)
            connector = aiohttp.TCPConnector(limit=0, force_close=False)
            timeout = aiohttp.ClientTimeout(total=60)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
                prepared = time.monotonic()
                buyers, items = await prepare(
                    http, stack.gateway_url, options.buyers, options.items
                )
                print(
                    f"{len(buyers)} buyers with a card, {len(items)} items "
                    f"({time.monotonic() - prepared:.1f} s)",
                    flush=True,
                )
                observer = Observer(stack)
                await observer.start()
                # A warm-up: connections, pools, caches, consumer groups settled.
                warm = await offer(http, stack.gateway_url, buyers, items, 10, 8.0, rng)
                await drained(observer, [a.order_id for a in warm if a.order_id], 60.0)
                await asyncio.sleep(2.0)
                idle = await idle_cpu(processes, options.idle_seconds)
                for number in range(1, options.rounds + 1):
                    for rate in options.levels:
                        levels.append(
                            await run_level(
                                http,
                                stack,
                                observer,
                                processes,
                                buyers,
                                items,
                                options,
                                round_number=number,
                                rate=rate,
                                rng=rng,
                            )
                        )
            final = await final_states(
                stack, [a.order_id for lv in levels for a in lv.attempts if a.order_id]
            )
            report = build_report(options, levels, observer, pgbench, final, stack, idle)
        finally:
            if observer is not None:
                await observer.stop()
            await stack.stop()
            if stack.admin_url is not None:
                await stack.drop_databases()
    pgbench += await run_pgbench(admin_dsn, options.pgbench_seconds, "after")
    add_pgbench(report, pgbench, levels)
    report.postgres = f"{version} (the machine's, {admin_dsn.split('@')[-1].split('/')[0]})"
    return report


def export_source(revision: str, into: Path) -> Path:
    """``src/`` of a git revision of this repository, exported under ``into``."""
    repository = Path(__file__).resolve().parents[1]
    archive = subprocess.run(
        ["git", "-C", str(repository), "archive", revision, "src"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


async def idle_cpu(processes: Processes, seconds: float) -> tuple[dict[str, float], float]:
    """What each role spends doing nothing (no orders), in % of one core; and the load."""
    load1 = os.getloadavg()[0]
    pids = await processes.pids()
    before = role_cpu_seconds(pids)
    await asyncio.sleep(seconds)
    spent = cpu_used(before, role_cpu_seconds(pids))
    return {role: value / seconds * 100 for role, value in spent.items()}, load1


async def final_states(stack: Stack, order_ids: list[str]) -> dict[str, int]:
    """The orders database's word: how many of the benchmark's orders are in each status."""
    connection = await asyncpg.connect(asyncpg_dsn(stack.database_url("orders")))
    try:
        rows = await connection.fetch(
            "SELECT status, count(*) AS n FROM orders WHERE id = ANY($1::uuid[]) GROUP BY status",
            order_ids,
        )
    finally:
        await connection.close()
    return {str(row["status"]): int(row["n"]) for row in rows}


# --- the report ----------------------------------------------------------------------------------


@dataclass
class Figures:
    """One level of one round, computed."""

    round: int
    offered: int
    created_rate: float
    created: int
    failed: int
    terminal: int
    confirmed: int
    cancelled: int
    throughput: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    create_p50_ms: float
    create_p99_ms: float
    saga_p50_ms: float
    saga_p99_ms: float
    observed_p99_ms: float
    steps_ms: dict[str, float]
    steps_p99_ms: dict[str, float]
    late_p99_ms: float
    load1: float
    commits_per_order: float
    commits_per_second: float
    cpu_ms: dict[str, float]
    support: tuple[float, float, float, int] | None

    @property
    def all_terminal(self) -> bool:
        return self.created > 0 and self.terminal == self.created

    @property
    def share(self) -> float:
        return self.saga_p50_ms / self.p50_ms if self.p50_ms else math.nan


def figures(level: Level, observer: Observer) -> Figures:
    attempts = level.attempts
    ok = [attempt for attempt in attempts if attempt.order_id]
    seen = [(attempt, observer.seen.get(attempt.order_id or "", Seen())) for attempt in ok]
    confirmed = [(a, s) for a, s in seen if s.status == "confirmed" and s.terminal is not None]
    totals = [s.terminal - a.started for a, s in confirmed]  # type: ignore[operator]
    sagas = [s.terminal - a.answered for a, s in confirmed]  # type: ignore[operator]
    observed = [s.terminal_received - a.started for a, s in confirmed]  # type: ignore[operator]
    creates = [a.answered - a.started for a in attempts if a.status == 201]
    steps: dict[str, list[float]] = {step: [] for step in COLUMNS}
    for attempt, s in confirmed:
        marks = [
            attempt.started,
            attempt.answered,
            s.reserved,
            s.charge_sent,
            s.charged,
            s.terminal,
        ]
        if any(mark is None for mark in (*marks, s.committed)):
            continue
        for step, (start, end) in zip(STEPS, itertools.pairwise(marks), strict=True):
            steps[step].append(end - start)  # type: ignore[operator]
        steps["committed"].append(s.committed - s.charged)  # type: ignore[operator]
    span = (
        max(s.terminal for _, s in confirmed) - min(a.started for a, _ in confirmed)  # type: ignore[type-var, operator]
        if confirmed
        else math.nan
    )
    first = min((a.started for a in attempts), default=0.0)
    last = max((a.started for a in attempts), default=0.0)
    orders = max(1, len(ok))
    return Figures(
        round=level.round,
        offered=level.offered,
        created_rate=len(attempts) / (last - first) if last > first else math.nan,
        created=len(ok),
        failed=len(attempts) - len(ok),
        terminal=sum(1 for _, s in seen if s.terminal is not None),
        confirmed=len(confirmed),
        cancelled=sum(1 for _, s in seen if s.status == "cancelled"),
        throughput=len(confirmed) / span if span and span > 0 else math.nan,
        p50_ms=percentile(totals, 0.5) * 1000,
        p99_ms=percentile(totals, 0.99) * 1000,
        max_ms=max(totals, default=math.nan) * 1000,
        create_p50_ms=percentile(creates, 0.5) * 1000,
        create_p99_ms=percentile(creates, 0.99) * 1000,
        saga_p50_ms=percentile(sagas, 0.5) * 1000,
        saga_p99_ms=percentile(sagas, 0.99) * 1000,
        observed_p99_ms=percentile(observed, 0.99) * 1000,
        steps_ms={step: percentile(values, 0.5) * 1000 for step, values in steps.items()},
        steps_p99_ms={step: percentile(values, 0.99) * 1000 for step, values in steps.items()},
        late_p99_ms=percentile([a.late for a in attempts], 0.99) * 1000,
        load1=level.load1,
        commits_per_order=level.commits / orders,
        commits_per_second=level.commits / level.wall if level.wall else math.nan,
        cpu_ms={role: seconds * 1000 / orders for role, seconds in level.cpu.items()},
        support=level.support_lag,
    )


def build_report(
    options: Options,
    levels: list[Level],
    observer: Observer,
    pgbench: list[Pgbench],
    final: dict[str, int],
    stack: Stack,
    idle: tuple[dict[str, float], float],
) -> Report:
    computed = [figures(level, observer) for level in levels]
    by_rate = {rate: [f for f in computed if f.offered == rate] for rate in options.levels}

    def cell(rate: int, value: Any, digits: int = 0) -> str:
        values = [value(f) for f in by_rate[rate]]
        values = [v for v in values if not math.isnan(v)]
        return spread(values, digits)

    main_rows = []
    for rate in options.levels:
        runs = by_rate[rate]
        main_rows.append(
            [
                str(rate),
                cell(rate, lambda f: f.created_rate),
                cell(rate, lambda f: f.throughput),
                cell(rate, lambda f: f.p50_ms, 1),
                cell(rate, lambda f: f.p99_ms, 1),
                cell(rate, lambda f: f.create_p50_ms, 1),
                cell(rate, lambda f: f.create_p99_ms, 1),
                cell(rate, lambda f: f.saga_p50_ms, 1),
                cell(rate, lambda f: f.saga_p99_ms, 1),
                cell(rate, lambda f: f.share * 100),
                f"{sum(f.terminal for f in runs)}/{sum(f.created for f in runs)}",
                str(sum(f.failed for f in runs)),
                cell(rate, lambda f: f.load1, 2),
            ]
        )
    every_round = [
        [
            str(f.round),
            str(f.offered),
            f"{f.created_rate:.0f}",
            f"{f.throughput:.0f}",
            f"{f.p50_ms:.1f}",
            f"{f.p99_ms:.1f}",
            f"{f.max_ms:.1f}",
            f"{f.observed_p99_ms:.1f}",
            f"{f.create_p99_ms:.1f}",
            f"{f.terminal}/{f.created}",
            f"{f.confirmed}",
            f"{f.cancelled}",
            str(f.failed),
            f"{f.late_p99_ms:.1f}",
            f"{f.load1:.2f}",
        ]
        for f in computed
    ]
    step_rows = [
        [
            str(rate),
            *(
                cell(rate, lambda f, s=step: f.steps_ms[s], 1)
                + " / "
                + cell(rate, lambda f, s=step: f.steps_p99_ms[s], 1)
                for step in COLUMNS
            ),
        ]
        for rate in options.levels
    ]
    roles = [role for role in ROLES if any(f.cpu_ms.get(role) for f in computed)]
    cost_rows = [
        [
            str(rate),
            cell(rate, lambda f: f.commits_per_order, 1),
            cell(rate, lambda f: f.commits_per_second),
            *(cell(rate, lambda f, r=role: f.cpu_ms.get(r, 0.0), 2) for role in roles),
            cell(rate, lambda f: sum(f.cpu_ms.values()), 1),
        ]
        for rate in options.levels
    ]
    support_rows = [
        [
            str(rate),
            cell(rate, lambda f: f.support[0] * 1000 if f.support else math.nan),
            cell(rate, lambda f: f.support[1] * 1000 if f.support else math.nan),
            cell(rate, lambda f: f.support[2] * 1000 if f.support else math.nan),
            str(sum(f.support[3] for f in by_rate[rate] if f.support)),
        ]
        for rate in options.levels
    ]

    at_target = by_rate.get(TARGET_P99_AT, [])
    p99_at_target = statistics.median([f.p99_ms for f in at_target]) if at_target else math.nan
    sustained = [
        statistics.median([f.throughput for f in by_rate[rate]])
        for rate in options.levels
        if by_rate[rate] and all(f.all_terminal for f in by_rate[rate])
    ]
    best = max(sustained, default=math.nan)
    non_terminal = sum(n for status, n in final.items() if status not in ("confirmed", "cancelled"))
    lag_p99 = [f.support[1] for f in computed if f.support]
    replicas = ", ".join(f"{name} {count}" for name, count in stack.replica_counts.items())
    gateway_workers = options.env.get("BAZAAR_GATEWAY_WORKERS", "2 (default)")

    code = (
        f" The services ran src/ of git revision {options.code_rev} (`--code-rev`)."
        if options.code_rev
        else ""
    )
    report = Report(
        title="Orders: create to confirmed through the gateway, at rising offered load",
        description=__doc__.split("\n", 1)[1].strip() if __doc__ else "",
        tables=[
            Table(
                "Per offered load (median [min, max] over rounds; times in ms)",
                [
                    "offered/s",
                    "created/s",
                    "confirmed/s",
                    "p50",
                    "p99",
                    "create p50",
                    "create p99",
                    "saga p50",
                    "saga p99",
                    "saga share %",
                    "terminal",
                    "failed creates",
                    "load avg (1 min)",
                ],
                main_rows,
                notes=[
                    "p50/p99: create request start → OrderConfirmed (envelope time). create: the "
                    "POST's own time. saga: create answered → confirmed; share: saga p50 / p50. "
                    "confirmed/s: confirmed orders / (last confirmed - first create) of the level.",
                ],
            ),
            Table(
                "The saga's steps (p50 / p99 ms, from the envelopes' times)",
                [
                    "offered/s",
                    "create (HTTP)",
                    "→ StockReserved",
                    "→ ChargePayment",
                    "→ PaymentSucceeded",
                    "→ OrderConfirmed",
                    "PaymentSucceeded → StockCommitted",
                ],
                step_rows,
                notes=[
                    "Each stage from the previous one's envelope time. Orders confirms a paid "
                    "order in the move that sends CommitStock, so the commit's round trip (last "
                    "column, from the charge) runs after confirmed, off the buyer's wait.",
                ],
            ),
            Table(
                "What an order costs (per order; CPU in ms, user + system)",
                ["offered/s", "commits/order", "commits/s", *roles, "total CPU"],
                cost_rows,
                notes=[
                    "commits: pg_stat_database.xact_commit of the stack's databases over the "
                    "level and its drain; CPU: psutil times of each role's processes (postgres: "
                    "the backends of the stack's databases; benchmark: the load generator and the "
                    "observer).",
                ],
            ),
            Table(
                "The stack at rest (CPU, % of one core)",
                [*(role for role in ROLES if role in idle[0]), "total", "load avg"],
                [
                    [
                        *(f"{idle[0][role]:.1f}" for role in ROLES if role in idle[0]),
                        f"{sum(idle[0].values()):.1f}",
                        f"{idle[1]:.2f}",
                    ]
                ],
                notes=[
                    f"{options.idle_seconds:g} s without orders after the warm-up: consumers "
                    "polling the broker, heartbeats, timers. Included in the per-order figures "
                    "above (spread over the orders of each level)."
                ],
            ),
            Table(
                "Support history during the run: event-to-visible lag (ms)",
                ["offered/s", "p50", "p99", "max", "events"],
                support_rows,
                notes=[
                    "Every message of the levels' sagas in support's database: recorded_at "
                    "(the ingesting transaction's now()) - occurred_at (the envelope's time)."
                ],
            ),
            Table(
                "Every level of every round",
                [
                    "round",
                    "offered/s",
                    "created/s",
                    "confirmed/s",
                    "p50",
                    "p99",
                    "max",
                    "p99 seen on the topic",
                    "create p99",
                    "terminal",
                    "confirmed",
                    "cancelled",
                    "failed creates",
                    "generator late p99",
                    "load avg",
                ],
                every_round,
                folded=True,
            ),
        ],
        notes=[
            f"Stack: every service of `bazaar up` ({replicas}), gateway workers "
            f"{gateway_workers}, the payment sandbox, tansu; database pools "
            f"{options.pool_size} connections at most per service; services log "
            f"at {options.log_level} as JSON lines.{code}",
            f"Load: {options.buyers} buyers with a 4242 card, {options.items} items with "
            f"100,000,000 units each, one unit per order, Poisson arrivals, {options.seconds:g} s "
            f"per level, {options.rounds} round(s); each level drained before the next.",
            "At the end the orders database holds "
            + ", ".join(f"{n} {status}" for status, n in sorted(final.items()))
            + (f" — {non_terminal} NOT terminal" if non_terminal else " — every order terminal")
            + ".",
            f"Target p99 ≤ {TARGET_P99_MS:.0f} ms at {TARGET_P99_AT}/s: "
            f"{p99_at_target:.1f} ms ({'met' if p99_at_target <= TARGET_P99_MS else 'NOT met'}). "
            f"Target ≥ {TARGET_SUSTAINED:.0f} orders/s sustained with every order terminal: "
            f"{best:.0f}/s ({'met' if best >= TARGET_SUSTAINED else 'NOT met'}).",
            "The machine is shared with other engineers' work: the load average is recorded "
            "beside each figure, and figures on a quiet machine may differ.",
        ],
        headline={
            f"p99 at {TARGET_P99_AT}/s": f"{p99_at_target:.1f} ms",
            "sustained (all terminal)": f"{best:.0f}/s",
            "support lag p99": f"{max(lag_p99) * 1000:.0f} ms" if lag_p99 else "-",
        },
    )
    return report


def add_pgbench(report: Report, pgbench: list[Pgbench], levels: list[Level]) -> None:
    rows = [
        [
            run.label,
            f"`{run.command}`",
            f"{run.tps:,.0f}",
            f"{run.latency_ms:.2f}",
            f"{run.load1:.2f}",
        ]
        for run in pgbench
    ]
    inserts = [run.tps for run in pgbench if run.label.startswith("one-row insert")]
    limit = statistics.median(inserts) if inserts else math.nan
    busiest = max((level.commits / level.wall for level in levels if level.wall), default=0.0)
    report.tables.insert(
        1,
        Table(
            "PostgreSQL's commit rate on this machine (pgbench, same run)",
            ["workload", "command", "tps (= commits/s)", "latency avg ms", "load avg"],
            rows,
            notes=[
                "commit_probe.sql: `" + PGBENCH_INSERT.strip() + "` (one row per transaction). "
                f"The stack's busiest level used {busiest:,.0f} commits/s, "
                f"{busiest / limit * 100:.0f}% of the one-row-insert rate.",
            ],
        ),
    )
    report.headline["pgbench one-row insert"] = f"{limit:,.0f} tps"
