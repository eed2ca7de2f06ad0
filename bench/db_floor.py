"""The database floor: what one saga step's transaction costs, by the layers it goes through.

Every move of the order saga is, at its least, one transaction that changes a row and
adds a message to the outbox. This benchmark runs that transaction (BEGIN, an insert
into a table of its own, an insert into ``outbox``, COMMIT) many times, one after the
other on one connection, through each layer the services stack on the driver, and
measures what each costs the process that runs it and the PostgreSQL backend that
serves it:

* **asyncpg**: the driver by hand (``connection.transaction()``, two ``execute``).
* **sqlalchemy core**: an ``AsyncConnection`` (``engine.begin()``), the same two
  statements as prepared ``text()``.
* **orm session**: an ``AsyncSession`` through :func:`bazaar.kit.db.transaction`, the
  same two statements: what every handler and request of the services opens.
* **orm unit of work**: the session adding a mapped object (flushed at commit) besides
  the outbox row, as orders adds a new order.
* **kit move**: the session, the row, and :func:`bazaar.kit.messaging.outbox.publish`
  of a new envelope: the least a service's saga move pays before its own work.

The rounds run the layers interleaved (one batch of each, then again), on uvloop as
the services run, so that a change of the shared machine's speed touches them alike.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg
import psutil
import uvloop
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bench.harness import DEFAULT_POSTGRES_URL, Report, Table, postgres_version
from bench.measure import scratch_database

SCHEMA = (
    "CREATE TABLE rows (id uuid PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT now())",
    "CREATE TABLE outbox (id bigserial PRIMARY KEY, message_id text NOT NULL, topic text NOT"
    " NULL, key text, type text NOT NULL, payload bytea NOT NULL, created_at timestamptz"
    " NOT NULL DEFAULT now())",
)
LAYERS = ("asyncpg", "sqlalchemy core", "orm session", "orm unit of work", "kit move")


class Base(DeclarativeBase):
    pass


class Row(Base):
    """The unit of work's row (the table of SCHEMA)."""

    __tablename__ = "rows"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)


PAYLOAD = b'{"order_id": "00000000-0000-0000-0000-000000000000", "amount": "10.00"}'


@dataclass(frozen=True)
class Options:
    transactions: int
    rounds: int
    database_url: str


def parse(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench db-floor", description=__doc__)
    parser.add_argument(
        "--transactions", type=int, default=2000, help="transactions of each layer per round"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", default=DEFAULT_POSTGRES_URL)
    options = parser.parse_args(argv)
    return Options(options.transactions, options.rounds, options.database_url)


def main(argv: list[str]) -> Report:
    return uvloop.run(run(parse(argv)))


@dataclass
class Sample:
    """One layer's batch: seconds of the process's CPU, its backend's CPU, and wall time."""

    client: float
    backend: float
    wall: float


@dataclass
class Layer:
    name: str
    samples: list[Sample] = field(default_factory=list)


Step = Callable[[], Awaitable[None]]


def _process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _backend_cpu(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


async def _measure(step: Step, backend_pid: int, transactions: int) -> Sample:
    client, backend, wall = _process_cpu(), _backend_cpu(backend_pid), time.perf_counter()
    for _ in range(transactions):
        await step()
    return Sample(
        client=_process_cpu() - client,
        backend=_backend_cpu(backend_pid) - backend,
        wall=time.perf_counter() - wall,
    )


async def run(options: Options) -> Report:
    from sqlalchemy import LargeBinary, bindparam, text

    from bazaar.kit.db import create_engine, create_session_factory, transaction
    from bazaar.kit.messaging import outbox
    from bazaar.kit.messaging.envelope import new_envelope

    version = await postgres_version(options.database_url)
    if version is None:
        raise SystemExit(f"no PostgreSQL answers at {options.database_url}")
    insert_row = text("INSERT INTO rows (id) VALUES (:id)")
    insert_message = text(
        "INSERT INTO outbox (message_id, topic, key, type, payload)"
        " VALUES (:message_id, :topic, :key, :type, :payload)"
    ).bindparams(bindparam("payload", type_=LargeBinary))

    def message(row_id: uuid.UUID) -> dict[str, object]:
        key = str(row_id)
        return {
            "message_id": key,
            "topic": "bench.db-floor",
            "key": key,
            "type": "bench.step",
            "payload": PAYLOAD,
        }

    async with scratch_database(options.database_url, "benchdbfloor") as dsn:
        connection = await asyncpg.connect(dsn)
        for statement in SCHEMA:
            await connection.execute(statement)
        engine = create_engine(dsn, pool_size=1)
        sessions = create_session_factory(engine)
        try:

            async def by_hand() -> None:
                row_id = uuid.uuid4()
                key = str(row_id)
                async with connection.transaction():
                    await connection.execute("INSERT INTO rows (id) VALUES ($1)", row_id)
                    await connection.execute(
                        "INSERT INTO outbox (message_id, topic, key, type, payload)"
                        " VALUES ($1, $2, $3, $4, $5)",
                        key,
                        "bench.db-floor",
                        key,
                        "bench.step",
                        PAYLOAD,
                    )

            async def core() -> None:
                row_id = uuid.uuid4()
                async with engine.begin() as conn:
                    await conn.execute(insert_row, {"id": row_id})
                    await conn.execute(insert_message, message(row_id))

            async def session() -> None:
                row_id = uuid.uuid4()
                async with transaction(sessions) as current:
                    await current.execute(insert_row, {"id": row_id})
                    await current.execute(insert_message, message(row_id))

            async def unit_of_work() -> None:
                row_id = uuid.uuid4()
                async with transaction(sessions) as current:
                    current.add(Row(id=row_id))
                    await current.execute(insert_message, message(row_id))

            async def kit_move() -> None:
                row_id = uuid.uuid4()
                key = str(row_id)
                envelope = new_envelope(
                    source="bench/db-floor",
                    type="bench.step",
                    subject=key,
                    data={"order_id": key, "amount": "10.00"},
                    correlation_id=key,
                )
                async with transaction(sessions) as current:
                    await current.execute(insert_row, {"id": row_id})
                    await outbox.publish(current, "bench.db-floor", envelope, key)

            steps: dict[str, Step] = {
                "asyncpg": by_hand,
                "sqlalchemy core": core,
                "orm session": session,
                "orm unit of work": unit_of_work,
                "kit move": kit_move,
            }
            direct_pid = connection.get_server_pid()
            async with engine.connect() as conn:
                pooled_pid = int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())
            layers = {name: Layer(name) for name in LAYERS}
            # Warm-up: statements prepared, caches filled, on both connections.
            for name in LAYERS:
                await _measure(steps[name], direct_pid, 100)
            for round_number in range(1, options.rounds + 1):
                for name in LAYERS:
                    pid = direct_pid if name == "asyncpg" else pooled_pid
                    sample = await _measure(steps[name], pid, options.transactions)
                    layers[name].samples.append(sample)
                    per = 1e6 / options.transactions
                    print(
                        f"round {round_number}  {name:<17}"
                        f" client {sample.client * per:6.0f} µs"
                        f"  backend {sample.backend * per:5.0f} µs"
                        f"  wall {sample.wall * per:6.0f} µs per transaction",
                        flush=True,
                    )
        finally:
            await engine.dispose()
            await connection.close()
    return report(options, list(layers.values()), version)


def _median_range(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} [{min(values):,.0f}, {max(values):,.0f}]"


def report(options: Options, layers: list[Layer], version: str) -> Report:
    per = 1e6 / options.transactions
    # Process CPU per transaction (µs), median over the rounds: the headline, and the ratio.
    medians = {
        layer.name: statistics.median(sample.client for sample in layer.samples) * per
        for layer in layers
    }
    bare = medians[layers[0].name]
    rows = [
        [
            layer.name,
            _median_range([sample.client * per for sample in layer.samples]),
            f"{medians[layer.name] / bare:.1f}x",
            _median_range([sample.backend * per for sample in layer.samples]),
            _median_range([sample.wall * per for sample in layer.samples]),
        ]
        for layer in layers
    ]
    return Report(
        title="The database floor: one saga step's transaction, by the layers it goes through",
        description=(__doc__ or "").strip().partition("\n")[2].strip(),
        tables=[
            Table(
                "Per transaction (BEGIN, two inserts, COMMIT; µs; median [min, max] over rounds)",
                ["layer", "process CPU", "of asyncpg", "backend CPU", "wall"],
                rows,
                notes=[
                    f"{options.transactions} transactions of each layer per round, one after"
                    f" the other on one connection, {options.rounds} rounds interleaved."
                    " Process CPU: user + system of this process (getrusage); backend CPU: the"
                    " PostgreSQL server process of the connection (psutil).",
                ],
            )
        ],
        headline={f"{name} µs": f"{value:,.0f}" for name, value in medians.items()},
        postgres=f"{version} (the machine's, {options.database_url.split('@')[-1]})",
    )
