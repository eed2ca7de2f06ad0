"""Auctions under contention: bids on one hot auction through the gateway against the bare
conditional UPDATE of one row on the same PostgreSQL, bids across many auctions, and the
delay from a bid's acceptance to its event on a stream client.

One run on the real platform (``bazaar.stack.supervisor.Stack``: gateway, auth,
payments, auctions, the payment sandbox and a tansu broker; the machine's PostgreSQL at
127.0.0.1:5432 when it answers, else an embedded one), configured as ``bazaar up`` runs
it (one auctions replica unless ``--replicas``, two gateway workers), except that the
gateway's rate limits are raised out of the load's reach (the limiter still runs) and
logs are at WARNING. 32 bidders (``--bidders``), each a registered customer with a card,
bid through the gateway with their own token, one request at a time each, on
keep-alive connections (aiohttp).

Each round (``--rounds``, interleaved, with the 1-minute load average at the start of
each phase: the machine is shared) measures, for ``--seconds`` after ``--warmup``:

1. **one hot auction**: every bidder bids the least amount it knows to be acceptable
   (the price in its last answer, or the ``minimum_amount`` of a 409) plus 0 to
   ``--jump``-1 increments, so bids collide the way they do on a popular lot. Every
   answer counts (201 accepted, 409 ``bid_too_low`` refused), and accepted/s is given
   apart; latency is the client's, per request. A Server-Sent Events client on the
   gateway measures the delay from each bid's acceptance (its ``created_at``, stamped by
   the service when it decides the bid) to the event's arrival;
   then the same with **rising bids** (each the microseconds since the start, above
   every bid sent before it), so that nearly every bid is accepted and written;
2. **the bare conditional UPDATE**: ``UPDATE … SET price = price + 1 WHERE id = $1 AND
   price >= 0`` on one row of a scratch database on the same server, autocommit, from
   asyncpg with as many connections as bidders, each one statement at a time: the
   physical limit for one auction. Also the same UPDATE with a bid row and an outbox row
   in one statement (what one accepted bid writes at least);
3. **many auctions**: ``--auctions`` open auctions, each bid on a random one.

    .venv/bin/python -m bench auctions [--rounds 3] [--seconds 10] [--bidders 32] \\
        [--jump 4] [--auctions 64] [--replicas 1] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import random
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson

from bazaar.kit.db import asyncpg_dsn
from bazaar.stack.console import QuietOutput
from bazaar.stack.services import spec_named
from bazaar.stack.supervisor import Stack
from bench.harness import DEFAULT_POSTGRES_URL, Report, Table, postgres_version
from bench.measure import nearest_rank, scratch_database, spread

ADMIN_EMAIL = "bench-admin@bazaar.example.com"
ADMIN_PASSWORD = "bench-admin-password"
PASSWORD = "bench-bidder-password"
CARD = {"card_number": "4242424242424242", "exp_month": 12, "exp_year": 2040, "cvc": "123"}
UNREACHED_LIMITS = {
    "BAZAAR_GATEWAY_RATE_LIMIT_USER_PER_SECOND": "1000000",
    "BAZAAR_GATEWAY_RATE_LIMIT_USER_BURST": "1000000",
    "BAZAAR_GATEWAY_RATE_LIMIT_ADDRESS_PER_SECOND": "1000000",
    "BAZAAR_GATEWAY_RATE_LIMIT_ADDRESS_BURST": "1000000",
}
# The targets.
TARGET_SHARE_OF_BARE = 0.40
TARGET_P99_MS = 50.0
TARGET_STREAM_P99_MS = 100.0


@dataclass
class Options:
    rounds: int
    seconds: float
    warmup: float
    bidders: int
    jump: int
    auctions: int
    replicas: int
    database_url: str | None


def parse(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench auctions")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--bidders", type=int, default=32)
    parser.add_argument(
        "--jump", type=int, default=4, help="bid the known minimum plus 0..jump-1 increments"
    )
    parser.add_argument("--auctions", type=int, default=64, help="for the many-auctions load")
    parser.add_argument("--replicas", type=int, default=1, help="auctions replicas")
    parser.add_argument(
        "--database-url",
        default=DEFAULT_POSTGRES_URL,
        help="a PostgreSQL admin URL; unreachable: an embedded server",
    )
    values = parser.parse_args(argv)
    return Options(**vars(values))


def load1() -> float:
    return os.getloadavg()[0]


# --- the platform's users -------------------------------------------------------------


@dataclass
class Bidder:
    id: str
    headers: dict[str, str]
    method_id: str


class Api:
    """The gateway, as the benchmark's clients use it."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base

    async def call(self, method: str, path: str, *, expect: int, **kwargs: Any) -> Any:
        async with self.http.request(method, self.base + path, **kwargs) as response:
            body = await response.read()
            if response.status != expect:
                raise RuntimeError(f"{method} {path}: {response.status} {body[:300]!r}")
            return orjson.loads(body) if body else None

    async def token(self, email: str, password: str) -> str:
        answer = await self.call(
            "POST",
            "/api/auth/token",
            expect=200,
            data={"grant_type": "password", "username": email, "password": password},
        )
        return str(answer["access_token"])

    async def user(self, admin: dict[str, str], roles: list[str]) -> Bidder:
        email = f"bench-{uuid.uuid4().hex[:12]}@bazaar.example.com"
        user = await self.call(
            "POST",
            "/api/auth/register",
            expect=201,
            json={"email": email, "password": PASSWORD, "display_name": "Bench"},
        )
        if set(roles) - {"customer"}:
            await self.call(
                "PUT",
                f"/api/auth/users/{user['id']}/roles",
                expect=200,
                json={"roles": sorted({"customer", *roles})},
                headers=admin,
            )
        headers = {"Authorization": f"Bearer {await self.token(email, PASSWORD)}"}
        card = await self.call(
            "POST", "/api/payments/methods", expect=201, json=CARD, headers=headers
        )
        return Bidder(user["id"], headers, card["id"])

    async def auction(self, seller: Bidder) -> str:
        created = await self.call(
            "POST",
            "/api/auctions",
            expect=201,
            json={
                "title": f"Hot lot {uuid.uuid4().hex[:6]}",
                "currency": "EUR",
                "starting_price": 100,
                "min_increment": 1,
                "ends_at": (datetime.now(UTC) + timedelta(hours=2)).isoformat(),
            },
            headers=seller.headers,
        )
        return str(created["id"])


# --- the loads ------------------------------------------------------------------------


@dataclass
class BidLoad:
    """What one measured load of bids gave."""

    load1: float
    seconds: float
    accepted: int = 0
    refused: int = 0
    other: int = 0
    latencies: list[float] = field(default_factory=list)
    stream_delays: list[float] = field(default_factory=list)

    @property
    def requests_per_second(self) -> float:
        return (self.accepted + self.refused + self.other) / self.seconds

    @property
    def accepted_per_second(self) -> float:
        return self.accepted / self.seconds

    def p(self, share: float) -> float:
        return nearest_rank(self.latencies, share) * 1000

    def stream_p(self, share: float) -> float:
        return nearest_rank(self.stream_delays, share) * 1000


async def bid_load(
    api: Api,
    bidders: list[Bidder],
    auction_ids: list[str],
    *,
    options: Options,
    stream_on: str | None = None,
    rising: bool = False,
) -> BidLoad:
    """Every bidder bids in a loop on a random one of ``auction_ids`` for warmup + seconds;
    what falls in the measured window counts. ``rising``: each bid is the microseconds
    since the start (above every bid sent before it), so nearly every bid is accepted
    and written: accepted bids under contention."""
    measuring = False
    stop_at = time.monotonic() + options.warmup + options.seconds
    result = BidLoad(load1=0.0, seconds=options.seconds)
    origin = time.perf_counter()

    async def bidder(person: Bidder, seed: int) -> None:
        rng = random.Random(seed)
        minimum = dict.fromkeys(auction_ids, 100)
        while time.monotonic() < stop_at:
            auction_id = rng.choice(auction_ids)
            amount = minimum[auction_id] + rng.randrange(options.jump)
            if rising:
                amount = 100 + int((time.perf_counter() - origin) * 1e6)
            body = orjson.dumps({"amount": amount, "payment_method_id": person.method_id})
            started = time.perf_counter()
            async with api.http.post(
                f"{api.base}/api/auctions/{auction_id}/bids",
                data=body,
                headers={**person.headers, "Content-Type": "application/json"},
            ) as response:
                answer: dict[str, Any] = orjson.loads(await response.read())
                status = response.status
            elapsed = time.perf_counter() - started
            if status == 201:
                minimum[auction_id] = answer["current_price"] + 1
                if measuring:
                    result.accepted += 1
            elif status == 409 and "minimum_amount" in answer:
                minimum[auction_id] = max(minimum[auction_id], answer["minimum_amount"])
                if measuring:
                    result.refused += 1
            elif measuring:
                result.other += 1
            if measuring:
                result.latencies.append(elapsed)

    async def watcher(auction_id: str) -> None:
        async with api.http.get(
            f"{api.base}/api/auctions/{auction_id}/stream",
            timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
        ) as response:
            async for line in response.content:
                if measuring and line.startswith(b"data: ") and b'"bid":{' in line:
                    arrived = time.time()
                    bid = orjson.loads(line[6:])["bid"]
                    created = datetime.fromisoformat(bid["created_at"].replace("Z", "+00:00"))
                    result.stream_delays.append(arrived - created.timestamp())

    watch = asyncio.create_task(watcher(stream_on)) if stream_on else None
    gc.collect()
    gc.freeze()  # the load generator's collector pauses are not the service's
    try:
        tasks = [asyncio.create_task(bidder(b, n)) for n, b in enumerate(bidders)]
        await asyncio.sleep(options.warmup)
        measuring = True
        result.load1 = load1()
        started = time.monotonic()
        await asyncio.gather(*tasks)
        result.seconds = time.monotonic() - started
        measuring = False
    finally:
        gc.unfreeze()
        if watch is not None:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
    return result


@dataclass
class UpdateLoad:
    load1: float
    per_second: float
    p50_ms: float
    p99_ms: float


_HOT_TABLES = """
    CREATE TABLE IF NOT EXISTS bench_hot (id uuid PRIMARY KEY, price bigint NOT NULL);
    CREATE TABLE IF NOT EXISTS bench_bids (id uuid PRIMARY KEY, auction_id uuid NOT NULL,
        amount bigint NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
    CREATE TABLE IF NOT EXISTS bench_outbox (id bigserial PRIMARY KEY, payload bytea NOT NULL);
"""
BARE_UPDATE = "UPDATE bench_hot SET price = price + 1 WHERE id = $1 AND price >= 0"
UPDATE_BID_OUTBOX = """
    WITH a AS (UPDATE bench_hot SET price = price + 1 WHERE id = $1 AND price >= 0
               RETURNING price),
         b AS (INSERT INTO bench_bids (id, auction_id, amount)
               SELECT gen_random_uuid(), $1, price FROM a)
    INSERT INTO bench_outbox (payload) SELECT $2::bytea FROM a
"""


async def update_load(dsn: str, statement: str, *extra: Any, options: Options) -> UpdateLoad:
    """One row updated by ``options.bidders`` connections at once, one statement at a time
    each, autocommit, for ``options.seconds`` after the warm-up; the statement's arguments
    are the row's id and ``extra`` (the outbox payload: about an envelope's size)."""
    setup = await asyncpg.connect(dsn)
    row = uuid.uuid4()
    try:
        await setup.execute(_HOT_TABLES)
        await setup.execute("INSERT INTO bench_hot VALUES ($1, 0)", row)
    finally:
        await setup.close()
    pool = await pool_when_free(dsn, options.bidders)
    done = 0
    latencies: list[float] = []
    measuring = False
    stop_at = time.monotonic() + options.warmup + options.seconds
    values = (row, *extra)

    async def worker() -> None:
        nonlocal done
        async with pool.acquire() as conn:
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                await conn.execute(statement, *values)
                if measuring:
                    done += 1
                    latencies.append(time.perf_counter() - started)

    try:
        tasks = [asyncio.create_task(worker()) for _ in range(options.bidders)]
        await asyncio.sleep(options.warmup)
        measuring = True
        at = load1()
        started = time.monotonic()
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - started
    finally:
        await pool.close()
    return UpdateLoad(
        at,
        done / elapsed,
        nearest_rank(latencies, 0.5) * 1000,
        nearest_rank(latencies, 0.99) * 1000,
    )


async def pool_when_free(dsn: str, size: int, *, timeout: float = 300.0) -> asyncpg.Pool:
    """A pool of ``size`` open connections, waiting while the server has none to spare (its
    ``max_connections`` is shared with whatever else runs on the machine)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await asyncpg.create_pool(dsn, min_size=size, max_size=size)
        except asyncpg.TooManyConnectionsError:
            if time.monotonic() > deadline:
                raise
            print(f"PostgreSQL has no {size} connections to spare now: waiting", flush=True)
            await asyncio.sleep(5)


# --- the run --------------------------------------------------------------------------


@dataclass
class Round:
    number: int
    hot: BidLoad
    rising: BidLoad
    bare: UpdateLoad
    with_rows: UpdateLoad
    many: BidLoad


def main(argv: list[str]) -> Report:
    return asyncio.run(run(parse(argv)))


async def run(options: Options) -> Report:
    postgres_url = options.database_url
    postgres = await postgres_version(postgres_url) if postgres_url else None
    if postgres is None:
        postgres_url = None
    with tempfile.TemporaryDirectory(prefix="bazaar-bench-auctions-") as temporary:
        stack = Stack(
            Path(temporary) / "stack",
            port=0,
            psp_port=0,
            replicas={"auctions": options.replicas},
            # What bidding calls, and nothing else competing for the CPUs.
            services=(spec_named("auth"), spec_named("payments"), spec_named("auctions")),
            postgres_url=postgres_url,
            database_prefix=f"bzbench_{uuid.uuid4().hex[:6]}" if postgres_url else None,
            env={
                "BAZAAR_BOOTSTRAP_ADMIN_EMAIL": ADMIN_EMAIL,
                "BAZAAR_BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD,
                "BAZAAR_AUTH_ACCESS_TOKEN_TTL_SECONDS": "14400",
                # Registering the bidders is not what is measured.
                "BAZAAR_AUTH_ARGON2_TIME_COST": "1",
                "BAZAAR_AUTH_ARGON2_MEMORY_COST_KIB": "8192",
                "BAZAAR_AUTH_ARGON2_PARALLELISM": "1",
                # Not what is measured; leaves the server's connections to what is.
                "BAZAAR_AUTH_DATABASE_POOL_SIZE": "2",
                "BAZAAR_PAYMENTS_DATABASE_POOL_SIZE": "2",
                **UNREACHED_LIMITS,
            },
            log_level="WARNING",
            output=QuietOutput(),
        )
        try:
            await stack.start()
            assert stack.admin_url is not None
            admin_dsn = asyncpg_dsn(stack.admin_url)
            if postgres_url is None:
                postgres = f"{await postgres_version(admin_dsn)} (embedded)"
            else:
                postgres = f"{postgres} ({postgres_url.rsplit('@', 1)[-1]})"
            rounds = await measure_rounds(stack, admin_dsn, options)
        finally:
            await stack.stop()
            if postgres_url is not None and stack.admin_url is not None:
                await stack.drop_databases()
    return report(rounds, options, postgres)


async def measure_rounds(stack: Stack, admin_dsn: str, options: Options) -> list[Round]:
    connector = aiohttp.TCPConnector(limit=options.bidders + 16, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as http:
        api = Api(http, stack.gateway_url)
        admin = {"Authorization": f"Bearer {await api.token(ADMIN_EMAIL, ADMIN_PASSWORD)}"}
        seller = await api.user(admin, ["seller"])
        bidders: list[Bidder] = []
        for _ in range(0, options.bidders, 8):
            left = min(8, options.bidders - len(bidders))
            bidders += await asyncio.gather(*(api.user(admin, []) for _ in range(left)))
        print(f"{len(bidders)} bidders registered, each with a card", flush=True)
        rounds = []
        async with scratch_database(admin_dsn, "bz_bench_bare") as scratch:
            for number in range(1, options.rounds + 1):
                hot_auction = await api.auction(seller)
                hot = await bid_load(
                    api, bidders, [hot_auction], options=options, stream_on=hot_auction
                )
                print_bids(f"round {number}: one hot auction", hot)
                rising = await bid_load(
                    api, bidders, [await api.auction(seller)], options=options, rising=True
                )
                print_bids(f"round {number}: one hot auction, rising bids", rising)
                bare = await update_load(scratch, BARE_UPDATE, options=options)
                print_update(f"round {number}: bare conditional UPDATE", bare)
                with_rows = await update_load(
                    scratch, UPDATE_BID_OUTBOX, os.urandom(600), options=options
                )
                print_update(f"round {number}: UPDATE + bid row + outbox row", with_rows)
                many_auctions = list(
                    await asyncio.gather(*(api.auction(seller) for _ in range(options.auctions)))
                )
                many = await bid_load(api, bidders, many_auctions, options=options)
                print_bids(f"round {number}: {options.auctions} auctions", many)
                rounds.append(Round(number, hot, rising, bare, with_rows, many))
        return rounds


def print_bids(what: str, load: BidLoad) -> None:
    stream = ""
    if load.stream_delays:
        stream = f", stream p50 {load.stream_p(0.5):.1f} ms p99 {load.stream_p(0.99):.1f} ms"
    print(
        f"{what}: {load.requests_per_second:,.0f} bids/s ({load.accepted_per_second:,.0f} "
        f"accepted/s, {load.other} other), p50 {load.p(0.5):.1f} ms, p99 {load.p(0.99):.1f} ms"
        f"{stream}; load {load.load1:.2f}",
        flush=True,
    )


def print_update(what: str, load: UpdateLoad) -> None:
    print(
        f"{what}: {load.per_second:,.0f}/s, p50 {load.p50_ms:.1f} ms, p99 {load.p99_ms:.1f} ms;"
        f" load {load.load1:.2f}",
        flush=True,
    )


# --- the report -----------------------------------------------------------------------


def _met(value: float, target: float, *, at_least: bool) -> str:
    if value != value:  # NaN: not measured
        return "not measured"
    return "yes" if (value >= target if at_least else value <= target) else "**no**"


def report(rounds: list[Round], options: Options, postgres: str | None) -> Report:
    hot_rate = [r.hot.requests_per_second for r in rounds]
    hot_accepted = [r.hot.accepted_per_second for r in rounds]
    bare_rate = [r.bare.per_second for r in rounds]
    share = [r.hot.requests_per_second / r.bare.per_second for r in rounds]
    hot_p99 = [r.hot.p(0.99) for r in rounds]
    stream_p99 = [r.hot.stream_p(0.99) for r in rounds]
    median_share = statistics.median(share)
    rising_share = statistics.median(
        [r.rising.accepted_per_second / r.with_rows.per_second for r in rounds]
    )
    median_p99 = statistics.median(hot_p99)
    median_stream = statistics.median(stream_p99)

    def bids_row(r: Round, load: BidLoad) -> list[str]:
        return [
            str(r.number),
            f"{load.load1:.2f}",
            f"{load.requests_per_second:,.0f}",
            f"{load.accepted_per_second:,.0f}",
            f"{load.refused:,}",
            f"{load.other:,}",
            f"{load.p(0.5):.1f}",
            f"{load.p(0.99):.1f}",
        ]

    bid_columns = [
        "round",
        "load (1 min)",
        "bids/s",
        "accepted/s",
        "refused",
        "other",
        "p50 ms",
        "p99 ms",
    ]
    tables = [
        Table(
            "Against the targets (median of the rounds, [min, max])",
            ["figure", "measured", "target", "met"],
            [
                [
                    f"one hot auction, {options.bidders} bidders: bids/s (accepted + refused)",
                    spread(hot_rate),
                    "",
                    "",
                ],
                ["one hot auction: accepted bids/s", spread(hot_accepted), "", ""],
                [
                    "one hot auction, rising bids (nearly all accepted): accepted bids/s",
                    spread([r.rising.accepted_per_second for r in rounds]),
                    "",
                    "",
                ],
                [
                    f"bare conditional UPDATE of one row, {options.bidders} connections: /s",
                    spread(bare_rate),
                    "",
                    "",
                ],
                [
                    "hot auction bids/s ÷ bare UPDATE/s (same round)",
                    f"{median_share:.0%} [{min(share):.0%}, {max(share):.0%}]",
                    f"≥ {TARGET_SHARE_OF_BARE:.0%}",
                    _met(median_share, TARGET_SHARE_OF_BARE, at_least=True),
                ],
                [
                    "rising bids: accepted/s ÷ UPDATE + bid row + outbox row/s",
                    f"{rising_share:.0%}",
                    "",
                    "",
                ],
                [
                    "hot auction p99 (ms)",
                    spread(hot_p99, 1),
                    f"≤ {TARGET_P99_MS:.0f}",
                    _met(median_p99, TARGET_P99_MS, at_least=False),
                ],
                [
                    "acceptance → stream client, p99 (ms)",
                    spread(stream_p99, 1),
                    f"< {TARGET_STREAM_P99_MS:.0f}",
                    _met(median_stream, TARGET_STREAM_P99_MS, at_least=False),
                ],
                [
                    f"{options.auctions} auctions: bids/s (accepted + refused)",
                    spread([r.many.requests_per_second for r in rounds]),
                    "",
                    "",
                ],
            ],
        ),
        Table(
            f"One hot auction through the gateway ({options.bidders} bidders, "
            f"{options.replicas} auctions replica(s))",
            bid_columns,
            [bids_row(r, r.hot) for r in rounds],
            notes=[
                f"Bids at the known minimum + 0..{options.jump - 1} increments; 'other': "
                "answers neither 201 nor 409 bid_too_low (there should be none). A bid below "
                "the least amount its replica last saw is refused from memory, without "
                "PostgreSQL: most refusals cost no write."
            ],
        ),
        Table(
            "One hot auction, rising bids (each above every bid sent before it)",
            bid_columns,
            [bids_row(r, r.rising) for r in rounds],
            notes=[
                "Nearly every bid is accepted and written (bid row, stream event, outbox "
                "row): compare accepted/s with 'UPDATE + bid row + outbox row' below."
            ],
        ),
        Table(
            f"The same PostgreSQL, one row, {options.bidders} asyncpg connections "
            "(autocommit, one statement at a time each)",
            ["round", "statement", "load (1 min)", "per second", "p50 ms", "p99 ms"],
            [
                row
                for r in rounds
                for row in (
                    [
                        str(r.number),
                        "bare conditional UPDATE",
                        f"{r.bare.load1:.2f}",
                        f"{r.bare.per_second:,.0f}",
                        f"{r.bare.p50_ms:.1f}",
                        f"{r.bare.p99_ms:.1f}",
                    ],
                    [
                        str(r.number),
                        "UPDATE + bid row + outbox row (one statement)",
                        f"{r.with_rows.load1:.2f}",
                        f"{r.with_rows.per_second:,.0f}",
                        f"{r.with_rows.p50_ms:.1f}",
                        f"{r.with_rows.p99_ms:.1f}",
                    ],
                )
            ],
        ),
        Table(
            "Acceptance to the event on a stream client (SSE through the gateway, hot auction)",
            ["round", "load (1 min)", "events", "p50 ms", "p99 ms", "max ms"],
            [
                [
                    str(r.number),
                    f"{r.hot.load1:.2f}",
                    f"{len(r.hot.stream_delays):,}",
                    f"{r.hot.stream_p(0.5):.1f}",
                    f"{r.hot.stream_p(0.99):.1f}",
                    f"{max(r.hot.stream_delays, default=float('nan')) * 1000:.1f}",
                ]
                for r in rounds
            ],
            notes=[
                "From the bid's created_at (stamped when the service decides it, before the "
                "write) to the event's arrival at the client; same machine, same clock."
            ],
        ),
        Table(
            f"Bids across {options.auctions} auctions (each bid on a random one)",
            bid_columns,
            [bids_row(r, r.many) for r in rounds],
        ),
    ]
    return Report(
        title="bids on one hot auction vs the bare UPDATE, many auctions, stream delay",
        description=(__doc__ or "").split("\n\n", 1)[1].split("\n    .venv", 1)[0].strip(),
        tables=tables,
        notes=[
            "The load generator (one Python process), the gateway (two workers), the "
            "services, the broker and PostgreSQL share the machine's cores; every figure "
            "carries the 1-minute load average at the start of its measurement.",
        ],
        headline={
            "hot bids/s": spread(hot_rate),
            "accepted/s": spread(hot_accepted),
            "bare UPDATE/s": spread(bare_rate),
            "hot/bare": f"{median_share:.0%}",
            "p99 ms": f"{median_p99:.1f}",
            "stream p99 ms": f"{median_stream:.1f}",
        },
        postgres=postgres,
    )
