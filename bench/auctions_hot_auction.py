"""Bids on one hot auction: accepted bids per second and latency at 32 concurrent bidders,
against a bare conditional UPDATE of one row on the same PostgreSQL, plus stream delay.

Starts a broker (tansu) and one auctions replica (uvicorn, uvloop, httptools) as
processes of their own, on a fresh database of the given server; serves the token keys
from this process. How bidders bid decides how many bids can be accepted at all:

* default: the least amount accepted as far as each knows (the price from its last
  answer, or the ``minimum_amount`` of a 409): all race for the same amount, one wins;
* ``--jump N``: that plus up to N-1, so fewer collide;
* ``--clock``: the microseconds since the start, so later bids are higher and (nearly)
  all are accepted: this measures accepted bids under contention.

Bids carry an Idempotency-Key unless ``--no-keys``. One Server-Sent Events client
measures how long an accepted bid takes to reach it.

    .venv/bin/python bench/auctions_hot_auction.py [--seconds 10] [--bidders 32] \\
        [--clock | --jump N] [--no-keys] \\
        [--database-url postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson

from bazaar.kit.db import (
    asyncpg_dsn,
    database_url,
    drop_database,
    ensure_database,
    migrate,
    migrations_dir,
)
from bazaar.kit.testing import TokenIssuer, serve_jwks
from bazaar.stack.broker import EmbeddedBroker
from bazaar.stack.ports import free_port, port_open
from bench.measure import nearest_rank

REPO = Path(__file__).resolve().parents[1]


async def bare_updates(dsn: str, bidders: int, seconds: float) -> float:
    """Conditional single-row UPDATEs per second (autocommit) from ``bidders`` connections."""
    setup = await asyncpg.connect(dsn)
    row_id = uuid.uuid4()
    await setup.execute("CREATE TABLE bench_hot (id uuid PRIMARY KEY, price bigint NOT NULL)")
    await setup.execute("INSERT INTO bench_hot VALUES ($1, 0)", row_id)
    await setup.close()
    pool = await asyncpg.create_pool(dsn, min_size=bidders, max_size=bidders)
    done = 0
    stop = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal done
        async with pool.acquire() as conn:
            while time.monotonic() < stop:
                await conn.execute(
                    "UPDATE bench_hot SET price = price + 1 WHERE id = $1 AND price >= 0", row_id
                )
                done += 1

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(bidders)))
    elapsed = time.monotonic() - started
    await pool.close()
    return done / elapsed


async def run(arguments: argparse.Namespace) -> None:
    name = f"bz_bench_auctions_{uuid.uuid4().hex[:8]}"
    await ensure_database(arguments.database_url, name)
    url = database_url(arguments.database_url, name)
    await migrate(migrations_dir("bazaar.auctions"), url)
    broker = EmbeddedBroker()
    broker.start()
    issuer = TokenIssuer()
    jwks = await serve_jwks(issuer)
    port = free_port()
    env = {
        **os.environ,
        "BAZAAR_AUCTIONS_DATABASE_URL": url.render_as_string(hide_password=False),
        "BAZAAR_AUCTIONS_DATABASE_POOL_SIZE": str(arguments.pool_size),
        "BAZAAR_AUCTIONS_VERIFY_PAYMENT_METHODS": "false",
        "BAZAAR_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "BAZAAR_JWKS_URL": issuer.jwks_url,
        "BAZAAR_AUTH_ISSUER": issuer.issuer,
        "BAZAAR_AUTH_AUDIENCE": issuer.audience,
        "BAZAAR_LOG_LEVEL": "WARNING",
    }
    service = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "uvicorn", "--factory", "bazaar.auctions.app:create_app"),
        *("--port", str(port), "--loop", "uvloop", "--http", "httptools"),
        *("--no-access-log", "--log-level", "warning"),
        cwd=REPO,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while not port_open("127.0.0.1", port):
            if time.monotonic() > deadline or service.returncode is not None:
                raise RuntimeError("the auctions service did not start")
            await asyncio.sleep(0.1)
        base = f"http://127.0.0.1:{port}/api/auctions"
        connector = aiohttp.TCPConnector(limit=arguments.bidders + 8)
        async with aiohttp.ClientSession(connector=connector) as http:
            seller = {"Authorization": f"Bearer {issuer.mint(roles=['customer', 'seller'])}"}
            ends_at = datetime.now(UTC) + timedelta(hours=1)
            async with http.post(
                base,
                json={
                    "title": "Hot lot",
                    "currency": "EUR",
                    "starting_price": 100,
                    "min_increment": 1,
                    "ends_at": ends_at.isoformat(),
                },
                headers=seller,
            ) as response:
                assert response.status == 201, await response.text()
                auction_id = (await response.json())["id"]
            bids_url = f"{base}/{auction_id}/bids"
            latencies: list[float] = []
            accepted_latencies: list[float] = []
            accepted_at: dict[str, float] = {}
            stream_delays: list[float] = []
            counts = {"accepted": 0, "refused": 0, "other": 0}
            measuring = {"on": False}
            stop_at = {"t": float("inf")}

            origin = time.perf_counter_ns() // 1000 - 1000

            async def bidder() -> None:
                rng = random.Random()
                user = str(uuid.uuid4())
                headers = {"Authorization": f"Bearer {issuer.mint(user)}"}
                method = str(uuid.uuid4())
                amount = 100
                while time.monotonic() < stop_at["t"]:
                    if arguments.clock:
                        amount = time.perf_counter_ns() // 1000 - origin
                    started = time.perf_counter()
                    async with http.post(
                        bids_url,
                        data=orjson.dumps({"amount": amount, "payment_method_id": method}),
                        headers={
                            **headers,
                            "Content-Type": "application/json",
                            **({} if arguments.no_keys else {"Idempotency-Key": uuid.uuid4().hex}),
                        },
                    ) as response:
                        body: dict[str, Any] = orjson.loads(await response.read())
                        status = response.status
                    elapsed = time.perf_counter() - started
                    if status == 201:
                        amount = body["current_price"] + rng.randint(1, arguments.jump)
                        if measuring["on"]:
                            counts["accepted"] += 1
                            accepted_latencies.append(elapsed)
                    elif status == 409 and "minimum_amount" in body:
                        amount = body["minimum_amount"] + rng.randint(0, arguments.jump - 1)
                        if measuring["on"]:
                            counts["refused"] += 1
                    elif measuring["on"]:
                        counts["other"] += 1
                    if measuring["on"]:
                        latencies.append(elapsed)

            async def watcher() -> None:
                async with http.get(f"{base}/{auction_id}/stream") as response:
                    async for line in response.content:
                        if line.startswith(b"data: ") and measuring["on"]:
                            data = orjson.loads(line[6:])
                            bid = data.get("bid")
                            if bid is not None:
                                created = datetime.fromisoformat(bid["created_at"])
                                stream_delays.append(
                                    datetime.now(UTC).timestamp() - created.timestamp()
                                )

            gc.collect()
            gc.freeze()  # the load generator's own collector pauses are not the service's
            watch = asyncio.create_task(watcher())
            stop_at["t"] = time.monotonic() + arguments.warmup + arguments.seconds
            tasks = [asyncio.create_task(bidder()) for _ in range(arguments.bidders)]
            await asyncio.sleep(arguments.warmup)
            measuring["on"] = True
            started = time.monotonic()
            await asyncio.gather(*tasks)
            elapsed = time.monotonic() - started
            measuring["on"] = False
            watch.cancel()
            del accepted_at
        rate = counts["accepted"] / elapsed
        requests = (counts["accepted"] + counts["refused"] + counts["other"]) / elapsed
        print(
            f"auction bids: {rate:8.0f} accepted/s, {requests:8.0f} requests/s "
            f"({counts['refused']} refused as too low, {counts['other']} other) "
            f"with {arguments.bidders} bidders"
        )
        print(
            f"  latency p50 {nearest_rank(latencies, 0.5) * 1000:.1f} ms, "
            f"p99 {nearest_rank(latencies, 0.99) * 1000:.1f} ms; accepted bids: "
            f"p50 {nearest_rank(accepted_latencies, 0.5) * 1000:.1f} ms, "
            f"p99 {nearest_rank(accepted_latencies, 0.99) * 1000:.1f} ms"
        )
        if stream_delays:
            print(
                f"  stream delay p50 {nearest_rank(stream_delays, 0.5) * 1000:.1f} ms, "
                f"p99 {nearest_rank(stream_delays, 0.99) * 1000:.1f} ms "
                f"({len(stream_delays)} events, mean {statistics.mean(stream_delays) * 1000:.1f})"
            )
    finally:
        service.terminate()
        await asyncio.wait_for(service.wait(), 10)
        await jwks.cleanup()
        broker.stop()
    baseline = await bare_updates(asyncpg_dsn(url), arguments.bidders, arguments.seconds)
    print(f"bare conditional UPDATE: {baseline:8.0f} /s;  auction/bare = {rate / baseline:.0%}")
    await drop_database(arguments.database_url, name)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--bidders", type=int, default=32)
    parser.add_argument("--pool-size", type=int, default=10)
    parser.add_argument("--no-keys", action="store_true", help="bid without Idempotency-Key")
    parser.add_argument(
        "--clock",
        action="store_true",
        help="bid the microseconds since the start: later bids are higher, most are accepted",
    )
    parser.add_argument(
        "--jump",
        type=int,
        default=1,
        help="bid the known minimum plus 0..jump-1 (1: everyone bids the minimum)",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "BAZAAR_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
