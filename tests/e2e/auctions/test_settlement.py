"""Closing and settlement end to end: each auction closes once, on time, with two replicas
(one of them killed at the end); the winner's card is charged at the provider; a declined
card passes the lot to the next bidder; a reserve not met is unsold; support retries a
settlement nobody could pay for."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from bazaar.kit.testing import wait_for
from bazaar.stack.supervisor import Stack
from tests.e2e.auctions.market import (
    auction_reaching,
    create_auction,
    event_stream,
    parse_time,
    place_bid,
    support_timeline,
)
from tests.e2e.conftest import E2EUser, MakeUser
from tests.e2e.shopping import APPROVES, DECLINES, add_card, sandbox_charges

CLOSED = "bazaar.auctions.auction.closed"
ATTEMPTED = "bazaar.auctions.settlement.attempted"


async def charges_of(stack: Stack, payment_ids: set[str]) -> list[dict[str, Any]]:
    """The provider's charges for these payments (its idempotency keys name them)."""
    return [
        charge
        for charge in await sandbox_charges(stack)
        if any(payment_id in charge["idempotency_key"] for payment_id in payment_ids)
    ]


async def timeline_with(
    gateway: httpx.AsyncClient, staff: E2EUser, auction_id: str, event_type: str, count: int
) -> list[dict[str, Any]]:
    """The auction's timeline at support, once it holds ``count`` events of ``event_type``."""

    async def enough() -> list[dict[str, Any]] | None:
        items = await support_timeline(gateway, staff, auction_id)
        return items if sum(item["type"] == event_type for item in items) >= count else None

    return await wait_for(enough, timeout=30, interval=0.25, message=f"{count} of {event_type}")


async def test_the_close_happens_once_within_two_seconds_and_the_winner_is_charged(
    stack: Stack, gateway: httpx.AsyncClient, admin: E2EUser, make_user: MakeUser
) -> None:
    seller, low, high = await make_user("seller"), await make_user(), await make_user()
    low_card, high_card = await add_card(gateway, low), await add_card(gateway, high)
    auction = await create_auction(gateway, seller, ends_in=3)
    ends_at = parse_time(auction["ends_at"])
    async with (
        event_stream(stack.gateway_url, auction["id"]) as through_gateway,
        event_stream(stack.replica("auctions", 2).url, auction["id"]) as on_replica_two,
    ):
        assert (await place_bid(gateway, low, auction["id"], 1000, low_card)).status_code == 201
        assert (await place_bid(gateway, high, auction["id"], 1500, high_card)).status_code == 201
        settled = await auction_reaching(gateway, auction["id"], "settled", timeout=30)
        for stream in (through_gateway, on_replica_two):
            await stream.wait_for_events(1, "settled")
            assert len(stream.of_type("closed")) == 1
            (closed,) = stream.of_type("closed")
            assert (closed.received_at - ends_at).total_seconds() < 2.0
    assert settled["winner_id"] == high.id and settled["final_price"] == 1500
    assert settled["payment_id"] is not None

    (charge,) = await charges_of(stack, {settled["payment_id"]})
    assert charge["status"] == "succeeded" and charge["amount"] == 1500
    assert charge["currency"] == "EUR" and charge["refunded_amount"] == 0
    payment = await gateway.get(f"/api/payments/{settled['payment_id']}", headers=high.headers)
    assert payment.json()["status"] == "succeeded"

    timeline = await timeline_with(gateway, admin, auction["id"], CLOSED, 1)
    (closed_event,) = [item for item in timeline if item["type"] == CLOSED]
    assert 0 <= (parse_time(closed_event["occurred_at"]) - ends_at).total_seconds() < 2.0


async def test_the_close_happens_once_when_a_replica_is_killed_just_before_the_end(
    stack: Stack, gateway: httpx.AsyncClient, admin: E2EUser, make_user: MakeUser
) -> None:
    seller, bidder = await make_user("seller"), await make_user()
    card = await add_card(gateway, bidder)
    auction = await create_auction(gateway, seller, ends_in=3)
    ends_at = parse_time(auction["ends_at"])
    assert (await place_bid(gateway, bidder, auction["id"], 1000, card)).status_code == 201
    async with event_stream(stack.replica("auctions", 2).url, auction["id"]) as stream:
        await wait_for(
            lambda: (ends_at - datetime.now(UTC)).total_seconds() < 0.3,
            timeout=10,
            message="just before the end",
        )
        await stack.kill("auctions", 1, restart=True)
        try:
            (closed,) = await stream.wait_for_events(1, "closed", timeout=10)
            assert (closed.received_at - ends_at).total_seconds() < 2.0
            await auction_reaching(gateway, auction["id"], "settled", timeout=30)
        finally:
            await stack.wait_healthy("auctions", timeout=60)
    timeline = await timeline_with(
        gateway, admin, auction["id"], "bazaar.auctions.auction.settled", 1
    )
    assert sum(item["type"] == CLOSED for item in timeline) == 1


async def test_a_declined_winner_passes_the_lot_to_the_next_bidder_at_their_own_bid(
    stack: Stack, gateway: httpx.AsyncClient, make_user: MakeUser
) -> None:
    seller, second, first = await make_user("seller"), await make_user(), await make_user()
    second_card = await add_card(gateway, second, APPROVES)
    first_card = await add_card(gateway, first, DECLINES)
    auction = await create_auction(gateway, seller, ends_in=3)
    assert (await place_bid(gateway, second, auction["id"], 1000, second_card)).status_code == 201
    assert (await place_bid(gateway, second, auction["id"], 1200, second_card)).status_code == 201
    assert (await place_bid(gateway, first, auction["id"], 2000, first_card)).status_code == 201

    settled = await auction_reaching(gateway, auction["id"], "settled", "unsold", timeout=40)
    assert settled["status"] == "settled", settled
    assert settled["winner_id"] == second.id
    assert settled["final_price"] == 1200  # their own highest bid, not the top price
    payments = await gateway.get("/api/payments", headers=first.headers)
    declined = [p for p in payments.json()["items"] if p["reference_id"] == auction["id"]]
    assert [(p["status"], p["amount"], p["failure_code"]) for p in declined] == [
        ("failed", 2000, "card_declined")
    ]
    charges = await charges_of(stack, {settled["payment_id"], declined[0]["id"]})
    assert sorted((c["status"], c["amount"]) for c in charges) == [
        ("failed", 2000),
        ("succeeded", 1200),
    ]


async def test_a_reserve_not_met_leaves_the_auction_unsold_without_a_charge(
    gateway: httpx.AsyncClient, seller: E2EUser, customer: E2EUser
) -> None:
    card = await add_card(gateway, customer)
    auction = await create_auction(gateway, seller, ends_in=3, reserve_price=10_000)
    assert (await place_bid(gateway, customer, auction["id"], 5000, card)).status_code == 201
    unsold = await auction_reaching(gateway, auction["id"], "unsold", "settled", timeout=15)
    assert unsold["status"] == "unsold"
    assert unsold["status_reason"] == "reserve_not_met"
    assert unsold["reserve_met"] is False and unsold["payment_id"] is None
    mine = await gateway.get("/api/payments", headers=customer.headers)
    assert [p for p in mine.json()["items"] if p["reference_id"] == auction["id"]] == []


async def test_support_retries_a_settlement_nobody_could_pay_for(
    stack: Stack, gateway: httpx.AsyncClient, make_user: MakeUser
) -> None:
    """The bidder's only card declines: unsold, a problem for support, whose retry charges
    the bidders again in a new round. A card that always declines declines again (a
    retry charges the methods the bids carry), so the auction ends unsold once more; the
    retry is seen at the provider, in the auction's history and in its stream."""
    seller, bidder = await make_user("seller"), await make_user()
    support = await make_user("support")
    card = await add_card(gateway, bidder, DECLINES)
    auction = await create_auction(gateway, seller, ends_in=3)
    assert (await place_bid(gateway, bidder, auction["id"], 1000, card)).status_code == 201
    unsold = await auction_reaching(gateway, auction["id"], "unsold", timeout=40)
    assert unsold["status_reason"] == "no_payable_bidder"

    async def settlement_failed_problem() -> dict[str, Any] | None:
        response = await gateway.get(
            "/api/support/problems",
            params={"kind": "settlement_failed", "limit": "100"},
            headers=support.headers,
        )
        assert response.status_code == 200, response.text
        return next((p for p in response.json()["items"] if p["entity_id"] == auction["id"]), None)

    problem: dict[str, Any] = await wait_for(settlement_failed_problem, timeout=30, interval=0.25)
    assert "retry_settlement" in problem["actions"]

    async with event_stream(stack.gateway_url, auction["id"]) as stream:
        requested = await gateway.post(
            "/api/support/actions",
            json={
                "action": "retry_settlement",
                "target_id": auction["id"],
                "reason": "the bidder says the card works now",
            },
            headers=support.headers,
        )
        assert requested.status_code == 202, requested.text

        async def action_done() -> dict[str, Any] | None:
            response = await gateway.get(
                f"/api/support/actions/{requested.json()['id']}", headers=support.headers
            )
            action: dict[str, Any] = response.json()
            return action if action["status"] != "pending" else None

        action: dict[str, Any] = await wait_for(action_done, timeout=30, interval=0.1)
        assert action["status"] == "succeeded", action
        assert action["outcome"]["status_code"] == 202
        retried = await stream.wait_for_events(1, "settlement_retried")
        assert retried[0].data["round"] == 2
        await stream.wait_for_events(1, "unsold", timeout=40)

    again = await auction_reaching(gateway, auction["id"], "unsold", timeout=40)
    assert again["status_reason"] == "no_payable_bidder"
    timeline = await timeline_with(gateway, support, auction["id"], ATTEMPTED, 2)
    attempts = [item["data"] for item in timeline if item["type"] == ATTEMPTED]
    assert [(a["round"], a["attempt"]) for a in attempts] == [(1, 1), (2, 2)]
    assert attempts[1]["retry_reason"] == "the bidder says the card works now"
    charges = await charges_of(stack, {a["payment_id"] for a in attempts})
    assert sorted((c["status"], c["amount"]) for c in charges) == [("failed", 1000)] * 2
