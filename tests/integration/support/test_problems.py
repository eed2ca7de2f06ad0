"""GET /api/support/problems: what needs a person, from the history alone, appearing past
a saga's deadline and gone once its outcome arrives."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from bazaar.kit.messaging.envelope import new_envelope
from bazaar.kit.testing import wait_for
from tests.integration.support.conftest import SupportHarness
from tests.integration.support.flows import AuctionFlow, Clock, OrderFlow, Published

LONG_AGO = timedelta(hours=2)


def long_ago() -> Clock:
    return Clock(datetime.now(UTC) - LONG_AGO)


async def problems(support: SupportHarness, **params: Any) -> list[dict[str, Any]]:
    response = await support.get("/problems", limit=100, **params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def problem_of(support: SupportHarness, entity_id: object) -> dict[str, Any] | None:
    for problem in await problems(support):
        if problem["entity_id"] == str(entity_id):
            return problem
    return None


async def test_an_order_created_long_ago_without_outcome_is_stuck_until_it_ends(
    support: SupportHarness,
) -> None:
    order = OrderFlow(clock=long_ago())
    started = [order.created(), *order.reserved(), order.charge()]
    sent = await support.publish(started)
    await support.wait_recorded(sent)

    problem = await problem_of(support, order.order_id)
    assert problem is not None
    assert problem["kind"] == "order_stuck"
    assert problem["entity_type"] == "order"
    assert problem["correlation_id"] == str(order.order_id)
    assert problem["user_id"] == str(order.user_id)
    assert problem["since"] == started[0].envelope.time.isoformat().replace("+00:00", "Z")
    assert problem["last_event"]["type"] == "bazaar.orders.order.created"
    assert problem["actions"] == ["retry_order", "cancel_order"]
    # Its payment was asked for long ago and never answered: a problem of its own.
    payment = await problem_of(support, order.payment_id)
    assert payment is not None
    assert payment["kind"] == "payment_unanswered"
    assert payment["actions"] == ["refund_payment"]

    ended = await support.publish([order.paid(), *order.committed(), order.confirmed()])
    await support.wait_recorded(ended)

    assert await problem_of(support, order.order_id) is None
    assert await problem_of(support, order.payment_id) is None


async def test_a_recent_order_is_not_a_problem_yet(support: SupportHarness) -> None:
    order = OrderFlow()
    sent = await support.publish([order.created()])
    await support.wait_recorded(sent)

    assert await problem_of(support, order.order_id) is None


async def test_a_cancellation_without_its_end_is_stuck_until_cancelled(
    support: SupportHarness,
) -> None:
    order = OrderFlow(clock=long_ago())
    sent = await support.publish([*order.confirmed_flow(), order.cancellation_requested()])
    await support.wait_recorded(sent)

    problem = await problem_of(support, order.order_id)
    assert problem is not None
    assert problem["kind"] == "cancellation_stuck"
    assert problem["outcome"] == "confirmed"
    assert problem["actions"] == ["retry_order"]

    await support.wait_recorded(await support.publish([order.cancelled("user_request")]))
    assert await problem_of(support, order.order_id) is None


async def test_a_payment_processing_long_ago_has_an_unknown_outcome_until_it_is_known(
    support: SupportHarness,
) -> None:
    order = OrderFlow(clock=long_ago())
    sent = await support.publish([order.created(), *order.reserved(), order.charge()])
    # The provider's answer was lost: payments says processing.
    sent += await support.publish([order.processing()])
    await support.wait_recorded(sent)

    problem = await problem_of(support, order.payment_id)
    assert problem is not None
    assert problem["kind"] == "payment_unknown_outcome"
    assert problem["entity_type"] == "payment"
    assert problem["correlation_id"] == str(order.order_id)
    assert problem["last_event"]["type"] == "bazaar.payments.payment.processing"

    await support.wait_recorded(await support.publish([order.paid()]))
    assert await problem_of(support, order.payment_id) is None


async def test_a_settlement_attempt_without_outcome_is_stuck_and_one_nobody_paid_failed(
    support: SupportHarness,
) -> None:
    auction = AuctionFlow(clock=long_ago())
    sent = await support.publish(
        [*auction.created(), *auction.bids(), auction.closed(), *auction.attempt(0)]
    )
    await support.wait_recorded(sent)

    stuck = await problem_of(support, auction.auction_id)
    assert stuck is not None
    assert stuck["kind"] == "settlement_stuck"
    assert stuck["actions"] == ["retry_settlement", "cancel_auction"]

    # Nobody could pay: unsold, a failed settlement.
    sent = await support.publish(
        [
            auction.payment_failed(0),
            *auction.attempt(1),
            auction.payment_failed(1),
            auction.unsold(),
        ]
    )
    await support.wait_recorded(sent)
    failed = await problem_of(support, auction.auction_id)
    assert failed is not None
    assert failed["kind"] == "settlement_failed"
    assert failed["outcome"] == "unsold:no_payable_bidder"
    assert failed["actions"] == ["retry_settlement", "cancel_auction"]

    # Support retried the settlement and the buyer paid this time.
    retried = AuctionFlow(
        auction_id=auction.auction_id,
        seller_id=auction.seller_id,
        bidders=auction.bidders,
        payments=(uuid.uuid4(), uuid.uuid4()),
        clock=Clock(datetime.now(UTC)),
    )
    await support.wait_recorded(
        await support.publish(
            [*retried.attempt(0), retried.payment_succeeded(0), retried.settled(0)]
        )
    )
    assert await problem_of(support, auction.auction_id) is None


async def test_an_unsold_auction_without_bids_is_no_problem(support: SupportHarness) -> None:
    auction = AuctionFlow(clock=long_ago())
    sent = await support.publish([*auction.created(), auction.closed(), auction.unsold("no_bids")])
    await support.wait_recorded(sent)

    assert await problem_of(support, auction.auction_id) is None


async def test_a_dead_letter_is_listed_until_its_entity_ends_after_it(
    support: SupportHarness,
) -> None:
    order = OrderFlow()
    created = order.created()
    dead = new_envelope(
        source="bazaar/catalog",
        type="bazaar.platform.message.dead_lettered",
        subject=created.envelope.id,
        correlation_id=str(order.order_id),
        data={
            "consumer": "catalog",
            "topic": "bazaar.catalog.commands",
            "partition": 1,
            "offset": 3,
            "error": "RuntimeError('no such table')",
            "original": created.envelope.model_dump(mode="json"),
            "original_raw": None,
        },
    )
    sent = await support.publish([created, Published("bazaar.dead-letter", "k", dead)])
    await support.wait_recorded(sent)

    listed = [
        p
        for p in await problems(support, kind="dead_letter")
        if p["entity_id"] == str(order.order_id)
    ]
    assert len(listed) == 1
    problem = listed[0]
    assert problem["id"] == f"dead_letter:{dead.id}"
    assert problem["detail"]["consumer"] == "catalog"
    assert problem["detail"]["original_type"] == "bazaar.orders.order.created"
    assert problem["actions"] == ["retry_order", "cancel_order"]

    later = OrderFlow(
        order_id=order.order_id,
        user_id=order.user_id,
        payment_id=order.payment_id,
        clock=Clock(datetime.now(UTC) + timedelta(seconds=1)),
    )
    await support.wait_recorded(await support.publish([later.cancelled("timeout")]))
    assert not [
        p
        for p in await problems(support, kind="dead_letter")
        if p["entity_id"] == str(order.order_id)
    ]


async def test_problems_come_oldest_first_in_pages_and_by_kind(support: SupportHarness) -> None:
    orders = [
        OrderFlow(clock=Clock(datetime.now(UTC) - LONG_AGO - timedelta(minutes=n)))
        for n in range(5)
    ]
    sent = await support.publish([order.created() for order in orders])
    await support.wait_recorded(sent)

    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        response = await support.get("/problems", kind="order_stuck", limit=2, cursor=cursor)
        assert response.status_code == 200, response.text
        seen.extend(response.json()["items"])
        cursor = response.json()["next_cursor"]
        if cursor is None:
            break

    assert [p["entity_id"] for p in seen] == [str(o.order_id) for o in reversed(orders)]
    assert {p["kind"] for p in seen} == {"order_stuck"}
    unknown = await support.get("/problems", kind="bored")
    assert unknown.status_code == 422


async def test_the_problems_gauge_counts_them_by_kind(support: SupportHarness) -> None:
    order = OrderFlow(clock=long_ago())
    await support.wait_recorded(await support.publish([order.created()]))

    async def gauge_shows_it() -> bool:
        metrics = (await support.client.get("/metrics")).text
        return 'bazaar_support_problems{kind="order_stuck"} 1.0' in metrics

    await wait_for(gauge_shows_it, message="the problems gauge")
