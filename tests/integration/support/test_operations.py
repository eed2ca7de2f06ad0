"""GET /api/support/operations: the history, filtered and paged, newest first; support and
admin only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.integration.support.conftest import SUPPORT, SupportHarness
from tests.integration.support.flows import AuctionFlow, Clock, OrderFlow


async def operations(support: SupportHarness, **params: Any) -> dict[str, Any]:
    response = await support.get("/operations", **params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
async def two_sagas(support: SupportHarness) -> tuple[OrderFlow, AuctionFlow]:
    """A confirmed order an hour ago and a settled auction now."""
    order = OrderFlow(clock=Clock(datetime.now(UTC) - timedelta(hours=1)))
    auction = AuctionFlow()
    sent = await support.publish([*order.confirmed_flow(), *auction.settled_flow()])
    await support.wait_recorded(sent)
    return order, auction


async def test_operations_are_filtered_by_user_entity_type_and_type(
    support: SupportHarness, two_sagas: tuple[OrderFlow, AuctionFlow]
) -> None:
    order, auction = two_sagas

    mine = (await operations(support, user_id=str(order.user_id), limit=100))["items"]
    assert mine and {item["user_id"] for item in mine} == {str(order.user_id)}
    assert {item["correlation_id"] for item in mine} == {str(order.order_id)}

    auctions = (await operations(support, entity_type="auction", limit=100))["items"]
    assert {item["entity_id"] for item in auctions} == {str(auction.auction_id)}
    # Created, opened, three bids, closed, two settlement attempts, settled (its charges
    # and payment outcomes are the payments' own).
    assert len(auctions) == 9

    bids = (await operations(support, type="bazaar.auctions.bid.accepted"))["items"]
    assert [bid["data"]["amount"] for bid in bids] == [900, 800, 600]

    payments = (await operations(support, entity_id=str(auction.payments[1])))["items"]
    assert {p["type"] for p in payments} == {
        "bazaar.payments.command.charge",
        "bazaar.payments.payment.succeeded",
    }


async def test_operations_are_filtered_by_time(
    support: SupportHarness, two_sagas: tuple[OrderFlow, AuctionFlow]
) -> None:
    order, _ = two_sagas
    half_an_hour_ago = (datetime.now(UTC) - timedelta(minutes=30)).isoformat()

    older = (await operations(support, until=half_an_hour_ago, limit=100))["items"]
    newer = (await operations(support, since=half_an_hour_ago, limit=100))["items"]

    assert {item["correlation_id"] for item in older} == {str(order.order_id)}
    assert str(order.order_id) not in {item["correlation_id"] for item in newer}
    assert len(older) + len(newer) == len((await operations(support, limit=100))["items"])


async def test_operations_come_newest_first_in_pages_without_repeats(
    support: SupportHarness, two_sagas: tuple[OrderFlow, AuctionFlow]
) -> None:
    everything = (await operations(support, limit=100))["items"]
    seen: list[dict[str, Any]] = []
    cursor = None
    pages = 0
    while True:
        page = await operations(support, limit=3, cursor=cursor)
        assert len(page["items"]) <= 3
        seen.extend(page["items"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert [item["id"] for item in seen] == [item["id"] for item in everything]
    assert len({item["id"] for item in seen}) == len(seen)
    times = [item["occurred_at"] for item in seen]
    assert times == sorted(times, reverse=True)
    assert pages == -(-len(everything) // 3)


async def test_a_cursor_that_is_not_ours_is_refused(support: SupportHarness) -> None:
    response = await support.get("/operations", cursor="bm90IG91cnM")
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_cursor"


@pytest.mark.parametrize("roles", [("customer",), ("seller",), ("customer", "seller")])
@pytest.mark.parametrize(
    "path",
    [
        "/operations",
        "/timeline?entity_id=x",
        "/problems",
        "/actions",
        "/actions/6b7e5fd2-4a9c-4e5e-9d3b-3b0c1e0f7a11",
    ],
)
async def test_customers_and_sellers_are_refused(
    support: SupportHarness, roles: tuple[str, ...], path: str
) -> None:
    response = await support.client.get(f"{SUPPORT}{path}", headers=support.headers(roles))
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"


async def test_support_and_admin_are_let_in_and_anonymous_callers_are_not(
    support: SupportHarness,
) -> None:
    for roles in (("support",), ("admin",), ("customer", "support")):
        response = await support.client.get(f"{SUPPORT}/operations", headers=support.headers(roles))
        assert response.status_code == 200
    anonymous = await support.client.get(f"{SUPPORT}/operations")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == 'Bearer error="invalid_token"'
