"""What end-to-end tests of auctions need: auctions, bids, live streams, replicas' counts."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson

from bazaar.kit.testing import wait_for
from bazaar.stack.supervisor import Stack
from tests.e2e.conftest import E2EUser

AUCTIONS = "/api/auctions"
SETTLED_OR_UNSOLD = ("settled", "unsold")


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def create_auction(
    gateway: httpx.AsyncClient, seller: E2EUser, *, ends_in: float = 3600, **fields: Any
) -> dict[str, Any]:
    """An auction of ``seller``, open now and ending in ``ends_in`` seconds."""
    body: dict[str, Any] = {
        "title": f"Lot {uuid.uuid4().hex[:6]}",
        "description": "for an end-to-end test",
        "currency": "EUR",
        "starting_price": 1000,
        "min_increment": 100,
        "ends_at": iso(datetime.now(UTC) + timedelta(seconds=ends_in)),
        **fields,
    }
    response = await gateway.post(AUCTIONS, json=body, headers=seller.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def place_bid(
    client: httpx.AsyncClient,
    bidder: E2EUser,
    auction_id: str,
    amount: int,
    method_id: str,
    *,
    max_amount: int | None = None,
) -> httpx.Response:
    """A bid through ``client``: the gateway, or one replica directly."""
    body: dict[str, Any] = {"amount": amount, "payment_method_id": method_id}
    if max_amount is not None:
        body["max_amount"] = max_amount
    return await client.post(f"{AUCTIONS}/{auction_id}/bids", json=body, headers=bidder.headers)


async def get_auction(
    gateway: httpx.AsyncClient, auction_id: str, viewer: E2EUser | None = None
) -> dict[str, Any]:
    response = await gateway.get(
        f"{AUCTIONS}/{auction_id}", headers=viewer.headers if viewer else None
    )
    assert response.status_code == 200, response.text
    auction: dict[str, Any] = response.json()
    return auction


async def all_bids(gateway: httpx.AsyncClient, auction_id: str) -> list[dict[str, Any]]:
    """Every accepted bid of the auction, in acceptance order (oldest first)."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = {"limit": "100", **({"cursor": cursor} if cursor else {})}
        response = await gateway.get(f"{AUCTIONS}/{auction_id}/bids", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return list(reversed(items))


async def auction_reaching(
    gateway: httpx.AsyncClient, auction_id: str, *statuses: str, timeout: float = 30.0
) -> dict[str, Any]:
    """The auction once its status is one of ``statuses``."""

    async def reached() -> dict[str, Any] | None:
        auction = await get_auction(gateway, auction_id)
        return auction if auction["status"] in statuses else None

    return await wait_for(
        reached, timeout=timeout, interval=0.05, message=f"auction {auction_id} {statuses}"
    )


def auctions_replica(stack: Stack, replica: int) -> httpx.AsyncClient:
    """A client of one auctions replica directly (not through the gateway)."""
    return httpx.AsyncClient(base_url=stack.replica("auctions", replica).url, timeout=15.0)


_BIDS_SERIES = re.compile(r"^bazaar_auction_bids_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$", re.M)


async def bids_decided_by_replica(stack: Stack) -> list[float]:
    """``bazaar_auction_bids_total`` (accepted and refused) of each auctions replica."""
    totals = []
    for process in stack.replicas("auctions"):
        async with httpx.AsyncClient(timeout=5) as client:
            text = (await client.get(f"{process.url}/metrics")).text
        totals.append(sum(float(match["value"]) for match in _BIDS_SERIES.finditer(text)))
    return totals


async def support_timeline(
    gateway: httpx.AsyncClient, staff: E2EUser, entity_id: str
) -> list[dict[str, Any]]:
    response = await gateway.get(
        "/api/support/timeline", params={"entity_id": entity_id}, headers=staff.headers
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


# --- Server-Sent Events ----------------------------------------------------------------


@dataclass
class ServerEvent:
    id: int | None
    event: str
    data: dict[str, Any]
    received_at: datetime


@dataclass
class EventStream:
    """One SSE client's events, read in the background while the test goes on."""

    events: list[ServerEvent] = field(default_factory=list)
    connected: asyncio.Event = field(default_factory=asyncio.Event)

    def of_type(self, *types: str) -> list[ServerEvent]:
        return [event for event in self.events if event.event in types]

    @property
    def last_id(self) -> int | None:
        ids = [event.id for event in self.events if event.id is not None]
        return ids[-1] if ids else None

    async def wait_for_events(
        self, count: int, *types: str, timeout: float = 20.0
    ) -> list[ServerEvent]:
        async def enough() -> list[ServerEvent] | None:
            found = self.of_type(*types)
            return found if len(found) >= count else None

        return await wait_for(enough, timeout=timeout, message=f"{count} {types} events")


@asynccontextmanager
async def event_stream(
    base_url: str, auction_id: str, *, last_event_id: int | None = None
) -> AsyncIterator[EventStream]:
    """Follow ``GET /api/auctions/{id}/stream`` at ``base_url`` (the gateway or a replica)."""
    stream = EventStream()
    headers = {"Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)

    async def read() -> None:
        async with (
            httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(10, read=None)) as client,
            client.stream("GET", f"{AUCTIONS}/{auction_id}/stream", headers=headers) as response,
        ):
            assert response.status_code == 200
            fields: dict[str, str] = {}
            async for line in response.aiter_lines():
                if line.startswith("retry:"):
                    # The server's first line, sent once it subscribed: from here on
                    # nothing committed is missed.
                    stream.connected.set()
                elif line == "":
                    if "data" in fields:
                        stream.events.append(
                            ServerEvent(
                                int(fields["id"]) if "id" in fields else None,
                                fields.get("event", "message"),
                                orjson.loads(fields["data"]),
                                datetime.now(UTC),
                            )
                        )
                    fields = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(":")
                    fields[name] = value[1:] if value.startswith(" ") else value

    task = asyncio.create_task(read())
    try:
        await wait_for(
            lambda: stream.connected.is_set() or task.done(), timeout=15, message="the stream"
        )
        if task.done():
            task.result()
        yield stream
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
