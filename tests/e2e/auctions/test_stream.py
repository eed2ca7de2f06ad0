"""The live stream end to end: clients on the gateway and on one replica see every bid,
wherever it was accepted, and a client that comes back with Last-Event-ID gets what it
missed."""

from __future__ import annotations

import httpx

from bazaar.stack.supervisor import Stack
from tests.e2e.auctions.market import (
    all_bids,
    auctions_replica,
    create_auction,
    event_stream,
    place_bid,
)
from tests.e2e.conftest import MakeUser
from tests.e2e.shopping import add_card


async def test_clients_on_the_gateway_and_on_one_replica_see_bids_accepted_by_the_other(
    stack: Stack, gateway: httpx.AsyncClient, make_user: MakeUser
) -> None:
    seller = await make_user("seller")
    alice, bob = await make_user(), await make_user()
    alice_card, bob_card = await add_card(gateway, alice), await add_card(gateway, bob)
    auction = await create_auction(gateway, seller)
    replica_one = stack.replica("auctions", 1).url
    async with (
        auctions_replica(stack, 2) as replica_two,
        event_stream(stack.gateway_url, auction["id"]) as through_gateway,
        event_stream(replica_one, auction["id"]) as on_replica_one,
    ):
        # Bids alternate between the other replica directly and the gateway.
        amount = 1000
        for n in range(10):
            bidder, card = (alice, alice_card) if n % 2 == 0 else (bob, bob_card)
            client = replica_two if n % 4 < 2 else gateway
            response = await place_bid(client, bidder, auction["id"], amount, card)
            assert response.status_code == 201, response.text
            amount += 100
        for stream in (through_gateway, on_replica_one):
            bids = await stream.wait_for_events(10, "bid")
            assert [event.data["bid"]["amount"] for event in bids] == list(range(1000, 2000, 100))
            assert [event.data["current_price"] for event in bids][-1] == 1900
            ids = [event.id for event in stream.events if event.id is not None]
            assert ids == sorted(set(ids)), "each event once, in order"
        # Both saw the very same events (same ids, same data).
        assert [(e.id, e.data) for e in through_gateway.of_type("bid")] == [
            (e.id, e.data) for e in on_replica_one.of_type("bid")
        ]
    stored = await all_bids(gateway, auction["id"])
    assert [bid["id"] for bid in stored] == [
        event.data["bid"]["id"] for event in through_gateway.of_type("bid")
    ]


async def test_a_client_resuming_with_last_event_id_gets_exactly_what_it_missed(
    stack: Stack, gateway: httpx.AsyncClient, make_user: MakeUser
) -> None:
    seller, bidder = await make_user("seller"), await make_user()
    card = await add_card(gateway, bidder)
    auction = await create_auction(gateway, seller)
    async with event_stream(stack.gateway_url, auction["id"]) as first:
        for amount in (1000, 1100, 1200):
            assert (
                await place_bid(gateway, bidder, auction["id"], amount, card)
            ).status_code == 201
        await first.wait_for_events(3, "bid")
        resume_from = first.last_id
        assert resume_from is not None
    # Away: three more bids, through a replica directly and through the gateway.
    async with auctions_replica(stack, 2) as replica_two:
        for client, amount in ((replica_two, 1300), (gateway, 1400), (replica_two, 1500)):
            assert (await place_bid(client, bidder, auction["id"], amount, card)).status_code == 201
    async with event_stream(stack.gateway_url, auction["id"], last_event_id=resume_from) as resumed:
        missed = await resumed.wait_for_events(3, "bid")
        assert [event.data["bid"]["amount"] for event in missed] == [1300, 1400, 1500]
        assert not resumed.of_type("state"), "a resumed stream starts with what was missed"
        assert [event.id for event in resumed.events] == [
            resume_from + 1,
            resume_from + 2,
            resume_from + 3,
        ]
        # And goes on live.
        assert (await place_bid(gateway, bidder, auction["id"], 1600, card)).status_code == 201
        live = await resumed.wait_for_events(4, "bid")
        assert live[-1].data["bid"]["amount"] == 1600 and live[-1].id == resume_from + 4
