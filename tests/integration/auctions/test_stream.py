"""The live stream over real HTTP: a client of one replica sees the bids accepted by the
other, in order, at once; it resumes with Last-Event-ID; closing and settling show too."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from bazaar.auctions.app import create_app
from bazaar.contracts import auctions as auction_events
from bazaar.contracts import payments
from bazaar.contracts.topics import DEAD_LETTER
from bazaar.kit.config import PlatformSettings
from bazaar.kit.db import create_session_factory
from bazaar.kit.messaging.kafka import ensure_topics
from bazaar.kit.testing import TokenIssuer, wait_for
from tests.integration.auctions.conftest import (
    AUCTIONS,
    Auctions,
    PaymentMethodsStandIn,
    PaymentsPeer,
    ServerEvent,
    read_events,
    served,
    settings_for,
)


@dataclass
class Servers:
    market: Auctions  # clients[n] talk to server n over real HTTP
    urls: list[str]


@pytest.fixture
async def servers(
    auctions_database: URL,
    auctions_engine: AsyncEngine,
    platform_settings: PlatformSettings,
    token_issuer: TokenIssuer,
    payment_methods: PaymentMethodsStandIn,
) -> AsyncIterator[Servers]:
    """Two replicas served by uvicorn on free ports (an in-process ASGI client would hold
    a streamed body back until it ends)."""
    await ensure_topics(
        platform_settings,
        [auction_events.TOPIC, payments.TOPIC, payments.COMMANDS_TOPIC, DEAD_LETTER],
    )
    settings = settings_for(auctions_database, payment_methods)
    apps = [create_app(settings, platform_settings), create_app(settings, platform_settings)]
    async with (
        served(apps[0]) as first,
        served(apps[1]) as second,
        httpx.AsyncClient(base_url=first, timeout=10) as client_a,
        httpx.AsyncClient(base_url=second, timeout=10) as client_b,
    ):
        market = Auctions(
            clients=[client_a, client_b],
            apps=apps,
            issuer=token_issuer,
            methods=payment_methods,
            platform=platform_settings,
            payments=PaymentsPeer(platform_settings),
            sessions=create_session_factory(auctions_engine),
            settings=settings,
        )
        yield Servers(market, [first, second])


@contextlib.asynccontextmanager
async def listening(
    url: str, auction_id: str, *, last_event_id: int | None = None
) -> AsyncIterator[tuple[list[ServerEvent], list[str], httpx.Response]]:
    """Connect to the stream; events and comment lines collect in the lists yielded."""
    headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
    events: list[ServerEvent] = []
    comments: list[str] = []
    async with (
        httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(10, read=None)) as client,
        client.stream("GET", f"{AUCTIONS}/{auction_id}/stream", headers=headers) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        reader = asyncio.create_task(read_events(response, events, comments=comments))
        try:
            yield events, comments, response
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await reader


async def test_a_client_of_one_replica_sees_bids_placed_through_the_other(
    servers: Servers,
) -> None:
    market = servers.market
    auction = await market.create(market.seller(), starting_price=1000, min_increment=100)
    auction_id = auction["id"]
    ann, bob = market.user(), market.user()
    async with listening(servers.urls[0], auction_id) as (events, comments, _):
        state = await wait_for(lambda: events[:1], message="the first state event")
        assert state[0].event == "state" and state[0].id == 0
        assert state[0].data["status"] == "open"

        delays = []
        for n in range(10):
            bidder = ann if n % 2 == 0 else bob
            started = time.monotonic()
            response = await market.bid(auction_id, bidder, 1000 + 100 * n, replica=1)
            assert response.status_code == 201, response.text
            await wait_for(
                lambda n=n: any(e.data.get("current_price") == 1000 + 100 * n for e in events),
                timeout=5,
                message=f"bid {n} on the stream",
            )
            delays.append(time.monotonic() - started)
        bids = [e for e in events if e.event == "bid"]
        assert [e.id for e in bids] == list(range(1, 11))
        assert [e.data["bid"]["amount"] for e in bids] == [1000 + 100 * n for n in range(10)]
        assert [e.data["bid_count"] for e in bids] == list(range(1, 11))
        assert all("max_amount" not in e.data["bid"] for e in bids)
        assert max(delays) < 1.0
        # Idle: the stream keeps the connection alive with comment lines.
        await wait_for(lambda: comments, timeout=5, message="a heartbeat")


async def test_a_client_resumes_with_last_event_id_and_misses_nothing(servers: Servers) -> None:
    market = servers.market
    auction = await market.create(market.seller(), starting_price=1000, min_increment=100)
    auction_id = auction["id"]
    ann, bob = market.user(), market.user()
    async with listening(servers.urls[1], auction_id) as (events, _, _):
        assert (await market.bid(auction_id, ann, 1000, max_amount=1500)).status_code == 201
        await wait_for(lambda: any(e.event == "bid" for e in events), message="first bid")
        last_seen = max(e.id or 0 for e in events)
    # Disconnected: bids (and an automatic one) go on without this client.
    assert (await market.bid(auction_id, bob, 1200, replica=1)).status_code == 201
    assert (await market.bid(auction_id, bob, 1700, replica=0)).status_code == 201

    async with listening(servers.urls[0], auction_id, last_event_id=last_seen) as (events, _, _):
        await wait_for(lambda: len(events) >= 3, message="the missed events")
        assert [e.id for e in events[:3]] == [last_seen + 1, last_seen + 2, last_seen + 3]
        assert [(e.data["bid"]["amount"], e.data["bid"]["auto"]) for e in events[:3]] == [
            (1200, False),
            (1300, True),
            (1700, False),
        ]
        # And it is live again.
        assert (await market.bid(auction_id, ann, 1800, replica=1)).status_code == 201
        await wait_for(
            lambda: any(e.data.get("current_price") == 1800 for e in events), message="live bid"
        )
        assert [e.id for e in events] == list(range(last_seen + 1, last_seen + len(events) + 1))


async def test_closing_and_settling_are_on_the_stream(servers: Servers) -> None:
    market = servers.market
    auction = await market.create(market.seller())
    auction_id = auction["id"]
    winner = market.user()
    async with listening(servers.urls[0], auction_id) as (events, _, _):
        assert (await market.bid(auction_id, winner, 2500, replica=1)).status_code == 201
        await market.end_now(auction_id)
        closed = await wait_for(
            lambda: [e for e in events if e.event == "closed"], timeout=10, message="closed"
        )
        assert closed[0].data["status"] == "closing"
        (charge,) = await market.payments.charges(auction_id, 1)
        await market.payments.answer(charge)
        settled = await wait_for(
            lambda: [e for e in events if e.event == "settled"], timeout=20, message="settled"
        )
        assert settled[0].data["winner_id"] == str(winner.id)
        assert settled[0].data["final_price"] == 2500
        ids = [e.id for e in events]
        assert ids == sorted(ids) and len(ids) == len(set(ids))


async def test_a_cancelled_auction_tells_its_watchers(servers: Servers) -> None:
    market = servers.market
    seller = market.seller()
    auction = await market.create(seller)
    async with listening(servers.urls[1], auction["id"]) as (events, _, _):
        await wait_for(lambda: events, message="state")
        response = await market.clients[0].post(
            f"{AUCTIONS}/{auction['id']}/cancel", headers=seller.headers
        )
        assert response.status_code == 202
        cancelled = await wait_for(
            lambda: [e for e in events if e.event == "cancelled"], message="cancelled"
        )
        assert cancelled[0].data["status"] == "cancelled"


async def test_a_burst_of_bids_arrives_on_the_stream_complete_and_in_order(
    servers: Servers,
) -> None:
    market = servers.market
    auction = await market.create(market.seller(), starting_price=100, min_increment=1)
    auction_id = auction["id"]
    bidders = [market.user() for _ in range(20)]
    async with listening(servers.urls[0], auction_id) as (events, _, _):
        await wait_for(lambda: events, message="state")
        # Everyone at once, through the other replica: bids are decided and written in
        # batches, and the stream must still carry every one of them, in order.
        answers = await asyncio.gather(
            *(
                market.bid(auction_id, bidder, 100 + 10 * n, max_amount=100 + 10 * n + 5, replica=1)
                for n, bidder in enumerate(bidders)
            )
        )
        accepted = [answer for answer in answers if answer.status_code == 201]
        assert accepted
        final = await market.get(auction_id)
        await wait_for(
            lambda: any(e.id == final["bid_count"] for e in events if e.event == "bid"),
            timeout=10,
            message="the last bid on the stream",
        )
        bids = [e for e in events if e.event == "bid"]
        assert [e.id for e in bids] == list(range(1, final["bid_count"] + 1))
        amounts = [e.data["bid"]["amount"] for e in bids]
        assert amounts == sorted(set(amounts))
        assert bids[-1].data["current_price"] == final["current_price"]
