"""The saga floor: a bare two-service saga, by hand and on bazaar.kit, side by side.

Issue 4 sets its order targets beside "a bare two-service saga over the same broker
(outbox polled every 5 ms)". This benchmark builds that saga on this machine twice, so
that the order benchmark's figures can be read against it:

* **bare**: asyncpg and aiokafka by hand. A relay polls the outbox every 5 ms and sends
  what it finds as one batch; a consumer handles each fetch in one transaction (one
  inbox insert for the fetch, then each message's statements), and commits offsets
  after every fetch. Messages are small JSON documents.
* **kit**: the same saga on the platform's own parts: CloudEvents envelopes, the
  outbox with its NOTIFY-woken relay (:mod:`bazaar.kit.messaging.relay`), the
  :class:`~bazaar.kit.messaging.consumer.MessageConsumer` with its inbox, SQLAlchemy
  sessions. What every service's saga step pays for, without the service's own work.

The saga: an *initiator* process starts sagas at the offered rate (a ``sagas`` row and
a Request in one transaction), a *responder* process answers each Request (a ``work``
row and a Reply in one transaction), the initiator records the Reply (an update). Each
process has its own database on the machine's PostgreSQL and runs on uvloop; the broker
is tansu, as in ``bazaar up``. Per offered rate: sagas completed per second, p50/p99
from the start's commit to the reply's, and CPU per saga by process (the two, the
broker and the PostgreSQL backends of their databases).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import asyncpg
import orjson
import uvloop
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.harness import DEFAULT_POSTGRES_URL, Report, Table, postgres_version
from bench.measure import PostgresBackends, cpu_used, open_loop, role_cpu_seconds

REQUESTS = "floor.requests"
REPLIES = "floor.replies"
KINDS = ("bare", "kit")
ROLES = ("initiator", "responder", "broker", "postgres")
BARE_POLL_SECONDS = 0.005
SCHEMA = (
    "CREATE TABLE sagas (id text PRIMARY KEY, started timestamptz NOT NULL DEFAULT"
    " clock_timestamp(), done timestamptz)",
    "CREATE TABLE work (id text PRIMARY KEY)",
    "CREATE TABLE outbox (id bigserial PRIMARY KEY, message_id text NOT NULL, topic text NOT"
    " NULL, key text, type text NOT NULL, payload bytea NOT NULL, created_at timestamptz"
    " NOT NULL DEFAULT now())",
    "CREATE TABLE inbox (consumer text NOT NULL, message_id text NOT NULL, handled_at"
    " timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (consumer, message_id))",
)


@dataclass(frozen=True)
class Options:
    levels: list[int]
    seconds: float
    database_url: str
    fetch_max_wait_ms: int
    builds: list[str]


def parse(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench saga-floor", description=__doc__)
    parser.add_argument("--levels", default="100,400,800,1200,1600,2000", help="offered sagas/s")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of one level")
    parser.add_argument("--database-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument(
        "--fetch-max-wait-ms",
        type=int,
        default=10,
        help="both consumers' fetch wait (the platform's default for tansu)",
    )
    parser.add_argument("--builds", default=",".join(KINDS), help="bare,kit or either alone")
    arguments = parser.parse_args(argv)
    builds = [build for build in arguments.builds.split(",") if build.strip()]
    if not builds or set(builds) - set(KINDS):
        parser.error(f"--builds takes {' and '.join(KINDS)}")
    return Options(
        levels=[int(level) for level in arguments.levels.split(",") if level.strip()],
        seconds=arguments.seconds,
        database_url=arguments.database_url.replace("postgresql+asyncpg://", "postgresql://"),
        fetch_max_wait_ms=arguments.fetch_max_wait_ms,
        builds=builds,
    )


def main(argv: list[str]) -> Report:
    return asyncio.run(run(parse(argv)))


# --- the two processes ---------------------------------------------------------------------

Start = Callable[[str], Coroutine[Any, Any, None]]
Close = Callable[[], Awaitable[None]]


def serve(kind: str, role: str, dsn: str, bootstrap: str, wait_ms: int, pipe: Connection) -> None:
    """A child process: one side of the saga, built ``kind``'s way, on uvloop as the services
    run. The initiator takes ``(rate, seconds, seed)`` orders from ``pipe`` and answers how
    many sagas it started and how many starts failed."""
    uvloop.run(_serve(kind, role, dsn, bootstrap, wait_ms, pipe))


async def _serve(
    kind: str, role: str, dsn: str, bootstrap: str, wait_ms: int, pipe: Connection
) -> None:
    build = _bare if kind == "bare" else _kit
    start, tasks, close = await build(role, dsn, bootstrap, wait_ms)
    pipe.send("ready")
    loop = asyncio.get_running_loop()
    while True:
        order = await loop.run_in_executor(None, pipe.recv)
        if order is None:
            break
        rate, seconds, seed = order
        refused = 0

        async def launch(_late: float) -> None:
            # Far past the build's ceiling a start waits for a pooled connection longer
            # than the pool allows: the saga was not started, and the level goes on.
            nonlocal refused
            try:
                await start(str(uuid.uuid4()))
            except Exception:  # counted, and reported beside the level
                refused += 1

        launched = await open_loop(rate, seconds, random.Random(seed), launch)
        pipe.send((launched - refused, refused))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await close()


async def _bare(
    role: str, dsn: str, bootstrap: str, wait_ms: int
) -> tuple[Start, list[asyncio.Task[None]], Close]:
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=10)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()

    async def publish(connection: asyncpg.Connection, topic: str, saga_id: str) -> None:
        payload = orjson.dumps({"id": str(uuid.uuid4()), "saga": saga_id, "topic": topic})
        await connection.execute(
            "INSERT INTO outbox (message_id, topic, key, type, payload)"
            " VALUES ($1, $2, $3, $2, $4)",
            saga_id + topic,
            topic,
            saga_id,
            payload,
        )

    async def relay() -> None:
        async with pool.acquire() as connection:
            while True:
                rows = await connection.fetch(
                    "SELECT id, topic, key, payload FROM outbox ORDER BY id LIMIT 500"
                )
                if not rows:
                    await asyncio.sleep(BARE_POLL_SECONDS)
                    continue
                sent = [
                    await producer.send(row["topic"], row["payload"], key=row["key"].encode())
                    for row in rows
                ]
                await asyncio.gather(*sent)
                await connection.execute(
                    "DELETE FROM outbox WHERE id = ANY($1::bigint[])", [row["id"] for row in rows]
                )

    async def handle(connection: asyncpg.Connection, message: dict[str, Any]) -> None:
        if role == "responder":
            await connection.execute("INSERT INTO work (id) VALUES ($1)", message["saga"])
            await publish(connection, REPLIES, message["saga"])
        else:
            await connection.execute(
                "UPDATE sagas SET done = clock_timestamp() WHERE id = $1", message["saga"]
            )

    async def consume() -> None:
        consumer = AIOKafkaConsumer(
            REQUESTS if role == "responder" else REPLIES,
            bootstrap_servers=bootstrap,
            group_id=f"floor-{role}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=wait_ms,
        )
        await consumer.start()
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=500, max_records=500)
                messages = [
                    orjson.loads(record.value or b"{}")
                    for records in batch.values()
                    for record in records
                ]
                if not messages:
                    continue
                async with pool.acquire() as connection, connection.transaction():
                    new = {
                        row["message_id"]
                        for row in await connection.fetch(
                            "INSERT INTO inbox (consumer, message_id) SELECT $1, unnest($2::text[])"
                            " ON CONFLICT DO NOTHING RETURNING message_id",
                            role,
                            [message["id"] for message in messages],
                        )
                    }
                    for message in messages:
                        if message["id"] in new:
                            await handle(connection, message)
                await consumer.commit(
                    {partition: records[-1].offset + 1 for partition, records in batch.items()}
                )
        finally:
            await consumer.stop()

    async def start(saga_id: str) -> None:
        async with pool.acquire() as connection, connection.transaction():
            await connection.execute("INSERT INTO sagas (id) VALUES ($1)", saga_id)
            await publish(connection, REQUESTS, saga_id)

    async def close() -> None:
        await producer.stop()
        await pool.close()

    return start, [asyncio.create_task(relay()), asyncio.create_task(consume())], close


async def _kit(
    role: str, dsn: str, bootstrap: str, wait_ms: int
) -> tuple[Start, list[asyncio.Task[None]], Close]:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import AsyncSession

    from bazaar.kit.config import PlatformSettings
    from bazaar.kit.db import create_engine, create_session_factory, transaction
    from bazaar.kit.logging import configure_logging
    from bazaar.kit.messaging import outbox
    from bazaar.kit.messaging.consumer import MessageConsumer
    from bazaar.kit.messaging.envelope import Envelope, new_envelope
    from bazaar.kit.messaging.relay import OutboxRelay

    # As the services log (JSON lines on stderr, INFO): the kit logs nothing per message.
    configure_logging(f"floor-{role}")
    platform = PlatformSettings(
        kafka_bootstrap_servers=bootstrap,
        kafka_fetch_max_wait_ms=wait_ms,
        kafka_session_timeout_ms=6000,
        kafka_heartbeat_interval_ms=1000,
    )
    engine = create_engine(dsn, pool_size=10)
    sessions = create_session_factory(engine)

    async def publish(session: AsyncSession, topic: str, type_: str, saga_id: str) -> None:
        envelope = new_envelope(
            source=f"bench/{role}", type=type_, subject=saga_id, data={}, correlation_id=saga_id
        )
        await outbox.publish(session, topic, envelope, key=saga_id)

    async def on_request(session: AsyncSession, envelope: Envelope) -> None:
        await session.execute(text("INSERT INTO work (id) VALUES (:id)"), {"id": envelope.subject})
        await publish(session, REPLIES, "floor.reply", str(envelope.subject))

    async def on_reply(session: AsyncSession, envelope: Envelope) -> None:
        await session.execute(
            text("UPDATE sagas SET done = clock_timestamp() WHERE id = :id"),
            {"id": envelope.subject},
        )

    consumer = MessageConsumer(
        name=f"floor-{role}",
        topics=[REQUESTS if role == "responder" else REPLIES],
        handlers={"floor.request": on_request, "floor.reply": on_reply},
        sessions=sessions,
        settings=platform,
        source=f"bench/{role}",
    )
    relay = OutboxRelay(service=f"floor-{role}", database_url=dsn, settings=platform)

    async def start(saga_id: str) -> None:
        async with transaction(sessions) as session:
            await session.execute(text("INSERT INTO sagas (id) VALUES (:id)"), {"id": saga_id})
            await publish(session, REQUESTS, "floor.request", saga_id)

    return (
        start,
        [asyncio.create_task(consumer.run()), asyncio.create_task(relay.run())],
        engine.dispose,
    )


# --- the run ---------------------------------------------------------------------------------


@dataclass
class Level:
    kind: str
    rate: int
    started: int
    refused: int
    done: int
    per_second: float
    p50_ms: float
    p99_ms: float
    cpu_ms: dict[str, float]


class Saga:
    """One kind's pair of processes, their databases and the broker they share."""

    def __init__(self, kind: str, options: Options, bootstrap: str, broker_pid: int) -> None:
        self.kind = kind
        self.options = options
        self.bootstrap = bootstrap
        self.broker_pid = broker_pid
        tag = uuid.uuid4().hex[:6]
        self.databases = {role: f"benchfloor_{tag}_{kind}_{role}" for role in ROLES[:2]}
        self.children: dict[str, tuple[multiprocessing.process.BaseProcess, Connection]] = {}

    def dsn(self, role: str) -> str:
        return self.options.database_url.rsplit("/", 1)[0] + "/" + self.databases[role]

    async def start(self) -> None:
        async with connected(self.options.database_url) as admin:
            for database in self.databases.values():
                await admin.execute(f'CREATE DATABASE "{database}"')
        for role in self.databases:
            async with connected(self.dsn(role)) as connection:
                for statement in SCHEMA:
                    await connection.execute(statement)
        context = multiprocessing.get_context("spawn")
        for role in self.databases:
            ours, theirs = context.Pipe()
            child = context.Process(
                target=serve,
                args=(
                    self.kind,
                    role,
                    self.dsn(role),
                    self.bootstrap,
                    self.options.fetch_max_wait_ms,
                    theirs,
                ),
                daemon=True,
            )
            child.start()
            self.children[role] = (child, ours)
        for role in self.children:
            await self._answer(role, timeout=60)
        # A first saga through both consumer groups: joined, topics made, pools warm.
        await self.offer(20, 2.0, seed=0)

    async def offer(self, rate: int, seconds: float, seed: int) -> tuple[int, int]:
        """Sagas started at ``rate`` for ``seconds``, and starts that failed; returns once
        every started one is done (or two minutes have passed)."""
        _, pipe = self.children["initiator"]
        pipe.send((rate, seconds, seed))
        started, refused = await self._answer("initiator", timeout=seconds + 120)
        deadline = time.monotonic() + 120
        async with connected(self.dsn("initiator")) as connection:
            while time.monotonic() < deadline:
                if not await connection.fetchval("SELECT count(*) FROM sagas WHERE done IS NULL"):
                    break
                await asyncio.sleep(0.1)
        return int(started), int(refused)

    async def _answer(self, role: str, *, timeout: float) -> Any:
        """What ``role``'s process sends next; fails loudly if it died or said nothing."""
        child, pipe = self.children[role]
        if not await asyncio.to_thread(pipe.poll, timeout):
            alive = "still running" if child.is_alive() else f"exited with {child.exitcode}"
            raise RuntimeError(
                f"the {self.kind} {role} did not answer in {timeout:.0f} s ({alive})"
            )
        return pipe.recv()

    async def pids(self, backends: PostgresBackends) -> dict[str, list[int]]:
        return {
            "initiator": [self.children["initiator"][0].pid or 0],
            "responder": [self.children["responder"][0].pid or 0],
            "broker": [self.broker_pid],
            "postgres": await backends.pids(),
        }

    async def level(self, rate: int, seconds: float, seed: int) -> Level:
        backends = PostgresBackends(self.options.database_url, *self.databases.values())
        try:
            async with connected(self.dsn("initiator")) as connection:
                await connection.execute("TRUNCATE sagas")
                pids = await self.pids(backends)
                before = role_cpu_seconds(pids)
                started, refused = await self.offer(rate, seconds, seed)
                now = await self.pids(backends)
                # The processes of the start sampled again, and any started since.
                after = role_cpu_seconds(
                    {role: sorted({*pids[role], *now[role]}) for role in ROLES}
                )
                row = await connection.fetchrow(
                    "SELECT count(*) AS done,"
                    " extract(epoch FROM max(done) - min(started)) AS span,"
                    " percentile_cont(0.5) WITHIN GROUP (ORDER BY done - started) AS p50,"
                    " percentile_cont(0.99) WITHIN GROUP (ORDER BY done - started) AS p99"
                    " FROM sagas WHERE done IS NOT NULL"
                )
        finally:
            await backends.close()
        assert row is not None
        spent = cpu_used(before, after)
        done = int(row["done"])
        return Level(
            kind=self.kind,
            rate=rate,
            started=started,
            refused=refused,
            done=done,
            per_second=done / float(row["span"] or 1),
            p50_ms=row["p50"].total_seconds() * 1000 if row["p50"] else float("nan"),
            p99_ms=row["p99"].total_seconds() * 1000 if row["p99"] else float("nan"),
            cpu_ms={role: spent[role] * 1000 / max(done, 1) for role in ROLES},
        )

    async def stop(self) -> None:
        for child, pipe in self.children.values():
            with contextlib.suppress(OSError):
                pipe.send(None)
            await asyncio.to_thread(child.join, 5)
            if child.is_alive():
                child.kill()
        async with connected(self.options.database_url) as admin:
            for database in self.databases.values():
                await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@contextlib.asynccontextmanager
async def connected(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """One connection to ``dsn`` for a block."""
    connection = await asyncpg.connect(dsn)
    try:
        yield connection
    finally:
        await connection.close()


async def run(options: Options) -> Report:
    from bazaar.kit.config import PlatformSettings
    from bazaar.kit.messaging.kafka import ensure_topics
    from bazaar.stack.broker import EmbeddedBroker

    version = await postgres_version(options.database_url)
    if version is None:
        raise SystemExit(f"no PostgreSQL answers at {options.database_url}")
    levels: list[Level] = []
    for kind in options.builds:
        # A broker for each kind: the other's topics and groups cost it nothing.
        broker = EmbeddedBroker()
        await asyncio.to_thread(broker.start)
        saga = Saga(kind, options, broker.bootstrap_servers, broker.pid or 0)
        try:
            await ensure_topics(
                PlatformSettings(kafka_bootstrap_servers=broker.bootstrap_servers),
                [REQUESTS, REPLIES],
            )
            await saga.start()
            for seed, rate in enumerate(options.levels, start=1):
                level = await saga.level(rate, options.seconds, seed)
                levels.append(level)
                print(
                    f"{kind:<5} offered {rate:>5}/s  done {level.done:>6}/{level.started:<6}"
                    f" refused {level.refused:<5}"
                    f" {level.per_second:>7.0f}/s  p50 {level.p50_ms:>8.1f} ms"
                    f"  p99 {level.p99_ms:>8.1f} ms  CPU/saga "
                    + " ".join(f"{role} {level.cpu_ms[role]:.2f}" for role in ROLES),
                    flush=True,
                )
        finally:
            await saga.stop()
            await asyncio.to_thread(broker.stop)
    return report(options, levels, version)


def report(options: Options, levels: list[Level], version: str) -> Report:
    rows = []
    for rate in options.levels:
        for kind in options.builds:
            level = next(lv for lv in levels if lv.kind == kind and lv.rate == rate)
            rows.append(
                [
                    str(rate),
                    kind,
                    f"{level.done}/{level.started}",
                    str(level.refused),
                    f"{level.per_second:.0f}",
                    f"{level.p50_ms:.1f}",
                    f"{level.p99_ms:.1f}",
                    *(f"{level.cpu_ms[role]:.2f}" for role in ROLES),
                    f"{sum(level.cpu_ms.values()):.2f}",
                ]
            )
    best = {
        kind: max((lv.per_second for lv in levels if lv.kind == kind), default=0.0)
        for kind in options.builds
    }
    return Report(
        title="The saga floor: a bare two-service saga, by hand and on bazaar.kit",
        description=(__doc__ or "").strip().partition("\n")[2].strip(),
        tables=[
            Table(
                "Per offered load, the two builds side by side (times in ms)",
                [
                    "offered/s",
                    "build",
                    "done/started",
                    "failed starts",
                    "done/s",
                    "p50",
                    "p99",
                    *(f"{role} CPU/saga" for role in ROLES),
                    "total CPU/saga",
                ],
                rows,
                notes=[
                    "p50/p99: the start's commit (clock_timestamp of its insert) to the reply's"
                    " update. done/s: sagas done / (last reply - first start) of the level;"
                    " failed starts: starts that raised (far past a build's ceiling, a start"
                    " waits longer for a pooled connection than the pool allows)."
                    " CPU: user + system of each role's processes over the level and its"
                    " drain, per saga done (postgres: the backends of the two databases).",
                    f"Both consumers fetch with a {options.fetch_max_wait_ms} ms wait; the bare"
                    f" relay polls every {BARE_POLL_SECONDS * 1000:.0f} ms, the kit's wakes on"
                    " NOTIFY (and polls every second).",
                ],
            )
        ],
        headline={f"{kind} best sagas/s": f"{best[kind]:.0f}" for kind in options.builds},
        postgres=f"{version} (the machine's, {options.database_url.split('@')[-1]})",
    )
