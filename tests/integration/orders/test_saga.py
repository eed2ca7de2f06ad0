"""The order saga end to end over the real broker: the real catalog reserves, commits and
releases stock; the test plays payments (and, where it must stay silent, the catalog)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from bazaar.contracts import catalog as catalog_contract
from bazaar.contracts import orders as orders_contract
from bazaar.contracts import payments as payments_contract
from bazaar.kit.messaging.envelope import Envelope
from bazaar.kit.testing import wait_for
from tests.integration.orders.conftest import ORDERS, Market, OpenMarket

_LATER = datetime.now(UTC) + timedelta(hours=1)


async def test_an_order_is_reserved_charged_confirmed_and_its_stock_committed(
    market: Market,
) -> None:
    buyer, headers, method = market.buyer()
    teapot, cups = await market.new_item(stock=3), await market.new_item(stock=10, price=250)
    order = await market.place(headers, method, (teapot, 1), (cups, 4))
    order_id = order["id"]

    charge = await market.charge(order_id)
    assert (charge.amount, charge.currency) == (2500, "EUR")
    assert str(charge.user_id) == buyer and str(charge.payment_method_id) == method
    assert (charge.reference_type, str(charge.reference_id)) == ("order", order_id)
    assert (await market.stock_of(teapot), await market.stock_of(cups)) == (2, 6)
    assert (await market.order(order_id))["payment_id"] == str(charge.payment_id)

    await market.pay(charge)
    confirmed = await market.settled(order_id, "confirmed")
    assert confirmed["payment_id"] == str(charge.payment_id)
    assert confirmed["status_reason"] is None
    await market.sent(catalog_contract.CommitStock, order_id)
    await market.sent(catalog_contract.StockCommitted, order_id)
    assert (await market.stock_of(teapot), await market.stock_of(cups)) == (2, 6)

    [event] = await market.sent(orders_contract.OrderConfirmed, order_id)
    assert event.data["payment_id"] == str(charge.payment_id)
    assert event.userid == buyer and event.subject == order_id
    # Every message of the saga carries the order's id as its correlation id.
    for command in (
        catalog_contract.ReserveStock,
        payments_contract.ChargePayment,
        catalog_contract.CommitStock,
        orders_contract.OrderCreated,
    ):
        assert len(await market.sent(command, order_id)) == 1


async def test_an_order_for_more_than_is_left_is_cancelled_out_of_stock(market: Market) -> None:
    _, headers, method = market.buyer()
    plenty, scarce = await market.new_item(stock=10), await market.new_item(stock=1)
    order = await market.place(headers, method, (plenty, 2), (scarce, 2))

    cancelled = await market.settled(order["id"], "cancelled")
    assert cancelled["status_reason"] == "out_of_stock"
    assert cancelled["payment_id"] is None
    assert (await market.stock_of(plenty), await market.stock_of(scarce)) == (10, 1)
    [event] = await market.sent(orders_contract.OrderCancelled, order["id"])
    assert event.data["reason"] == "out_of_stock"
    assert market.count(payments_contract.ChargePayment, order["id"]) == 0


@pytest.mark.parametrize(
    ("failure_code", "reason"),
    [("card_declined", "payment_declined"), ("processing_error", "payment_failed")],
)
async def test_a_failed_payment_returns_the_stock(
    market: Market, failure_code: str, reason: str
) -> None:
    _, headers, method = market.buyer()
    item = await market.new_item(stock=5)
    order = await market.place(headers, method, (item, 2))
    charge = await market.charge(order["id"])
    assert await market.stock_of(item) == 3

    await market.pay(charge, "failed", failure_code=failure_code)
    cancelled = await market.settled(order["id"], "cancelled")
    assert cancelled["status_reason"] == reason
    assert await market.stock_of(item) == 5
    await market.sent(catalog_contract.ReleaseStock, order["id"])
    assert market.count(payments_contract.CancelPayment, order["id"]) == 0


async def test_a_customer_cancels_a_pending_order_and_the_charge_is_called_off(
    market: Market,
) -> None:
    _, headers, method = market.buyer()
    item = await market.new_item(stock=5)
    order = await market.place(headers, method, (item, 2))
    charge = await market.charge(order["id"])

    response = await market.orders.post(f"{ORDERS}/{order['id']}/cancel", headers=headers)
    assert response.status_code == 202
    assert response.json()["status"] == "pending"
    [cancel] = await market.sent(payments_contract.CancelPayment, order["id"])
    assert cancel.data["payment_id"] == str(charge.payment_id)
    [asked] = await market.sent(orders_contract.OrderCancellationRequested, order["id"])
    assert asked.data["reason"] == "user_request"

    # A charge answered after the cancel was asked for changes nothing.
    await market.pay(charge)
    await market.pay(charge, "refunded")
    cancelled = await market.settled(order["id"], "cancelled")
    assert cancelled["status_reason"] == "user_request"
    assert await market.stock_of(item) == 5
    assert market.count(catalog_contract.CommitStock, order["id"]) == 0


async def test_support_cancels_a_confirmed_order_refunding_and_restocking_it(
    market: Market,
) -> None:
    _, headers, method = market.buyer()
    item = await market.new_item(stock=5)
    order = await market.place(headers, method, (item, 3))
    charge = await market.charge(order["id"])
    await market.pay(charge)
    await market.settled(order["id"], "confirmed")
    assert await market.stock_of(item) == 2

    support = market.headers(None, "support")
    response = await market.orders.post(f"{ORDERS}/{order['id']}/cancel", headers=support)
    assert response.status_code == 202
    assert response.json()["status"] == "cancelling"
    [refund] = await market.sent(payments_contract.CancelPayment, order["id"])
    assert refund.data["payment_id"] == str(charge.payment_id)
    assert (await market.order(order["id"]))["status"] == "cancelling"
    # Asking again while it runs is accepted and changes nothing.
    again = await market.orders.post(f"{ORDERS}/{order['id']}/cancel", headers=headers)
    assert again.status_code == 202

    await market.pay(charge, "refunded")
    cancelled = await market.settled(order["id"], "cancelled")
    assert cancelled["status_reason"] == "support_action"
    assert await market.stock_of(item) == 5
    assert market.count(payments_contract.CancelPayment, order["id"]) == 1
    [event] = await market.sent(orders_contract.OrderCancelled, order["id"])
    assert event.data["payment_id"] == str(charge.payment_id)


async def test_every_answer_delivered_three_times_gives_the_same_order(market: Market) -> None:
    """Each answer arrives once more as a redelivery (same message) and once as the answer
    to a re-sent command (a new message): the saga moves once per step."""
    _, headers, method = market.buyer()
    item = await market.new_item(stock=5)
    order = await market.place(headers, method, (item, 2))
    order_id = order["id"]
    duplicates_before, handled_before = (
        _handled_by_orders("duplicate"),
        _handled_by_orders("handled"),
    )

    [reserved] = await market.sent(catalog_contract.StockReserved, order_id)
    await _twice_more(market, reserved, catalog_contract.TOPIC, order_id)
    charge = await market.charge(order_id)
    paid = await market.pay(charge)
    await _twice_more(market, paid, payments_contract.TOPIC, str(charge.payment_id))
    [committed] = await market.sent(catalog_contract.StockCommitted, order_id)
    await _twice_more(market, committed, catalog_contract.TOPIC, order_id)

    await market.settled(order_id, "confirmed")
    await wait_for(
        lambda: (
            _handled_by_orders("duplicate") >= duplicates_before + 3
            and _handled_by_orders("handled") >= handled_before + 6
        ),
        message="orders to have handled every copy",
    )
    await market.sent(catalog_contract.CommitStock, order_id)
    await market.sent(orders_contract.OrderConfirmed, order_id)
    assert market.count(payments_contract.ChargePayment, order_id) == 1
    assert market.count(catalog_contract.CommitStock, order_id) == 1
    assert market.count(orders_contract.OrderConfirmed, order_id) == 1
    assert (await market.order(order_id))["status"] == "confirmed"
    assert await market.stock_of(item) == 3


def _handled_by_orders(outcome: str) -> float:
    """Messages the orders consumer took for the saga's answers, by outcome."""
    return sum(
        REGISTRY.get_sample_value(
            "bazaar_messages_handled_total",
            {"consumer": "orders", "type": message.TYPE, "outcome": outcome},
        )
        or 0.0
        for message in (
            catalog_contract.StockReserved,
            catalog_contract.StockCommitted,
            payments_contract.PaymentSucceeded,
        )
    )


async def _twice_more(market: Market, answer: Envelope, topic: str, key: str) -> None:
    copy = answer.model_copy(update={"id": str(uuid.uuid4())})
    await market.redeliver(answer, key=key, topic=topic)
    await market.redeliver(copy, key=key, topic=topic)


async def test_a_late_charge_answer_within_the_charge_steps_tries_still_confirms(
    open_market: OpenMarket,
) -> None:
    """The lost-answer card: payments answers only after orders asked several times; the
    command is the same payment every time, and the order ends confirmed."""
    market = await open_market(charge_deadline_seconds=0.5, charge_attempts=6)
    _, headers, method = market.buyer()
    item = await market.new_item(stock=5)
    order = await market.place(headers, method, (item, 1))

    first = await market.charge(order["id"])
    third = await market.charge(order["id"], attempt=3)
    assert third == first  # same payment id, amount, everything
    timed_out = await market.sent(orders_contract.OrderSagaStepTimedOut, order["id"], count=2)
    assert [e.data["attempt"] for e in timed_out[:2]] == [2, 3]
    assert timed_out[0].data["step"] == "charging"
    await market.pay(third)
    await market.settled(order["id"], "confirmed")
    assert await market.stock_of(item) == 4


async def test_a_charge_never_answered_compensates_with_reason_timeout(
    open_market: OpenMarket,
) -> None:
    market = await open_market(charge_deadline_seconds=0.3, charge_attempts=3)
    _, headers, method = market.buyer()
    item = await market.new_item(stock=5)
    order = await market.place(headers, method, (item, 2))

    charges = await market.sent(payments_contract.ChargePayment, order["id"], count=3)
    assert len({e.id for e in charges}) == 3
    assert len({e.data["payment_id"] for e in charges}) == 1
    [cancel] = await market.sent(payments_contract.CancelPayment, order["id"])
    assert cancel.data["payment_id"] == charges[0].data["payment_id"]
    charge = payments_contract.ChargePayment.model_validate(charges[0].data)
    await market.pay(charge, "cancelled")
    cancelled = await market.settled(order["id"], "cancelled")
    assert cancelled["status_reason"] == "timeout"
    assert await market.stock_of(item) == 5
    assert market.count(payments_contract.ChargePayment, order["id"]) == 3


async def test_a_paid_order_is_confirmed_before_the_catalog_commits_its_stock(
    open_market: OpenMarket,
) -> None:
    """The catalog plays dead after the reservation: the order is confirmed all the same
    (the buyer paid, the units are held), the commit is sent again past its deadline, and
    when it never lands the buyer is refunded (``cancelling``, then ``cancelled``, reason
    ``timeout``): confirmed once, cancelled once."""
    market = await open_market(
        real_catalog=False,
        commit_deadline_seconds=0.3,
        commit_attempts=3,
        release_deadline_seconds=0.3,
        release_attempts=1,
    )
    _, headers, method = market.buyer()
    item = await market.new_item()
    order = await market.place(headers, method, (item, 1))
    order_id = order["id"]
    await market.sent(catalog_contract.ReserveStock, order_id)
    await market.answer(
        catalog_contract.StockReserved(
            reservation_id=uuid.UUID(order_id),
            lines=[catalog_contract.StockLine(item_id=uuid.UUID(item), quantity=1)],
            expires_at=_LATER,
        ),
        order_id,
        key=order_id,
    )
    charge = await market.charge(order_id)
    await market.pay(charge)

    confirmed = await market.settled(order_id, "confirmed")
    assert confirmed["status_reason"] is None
    commits = await market.sent(catalog_contract.CommitStock, order_id, count=3)
    assert {e.data["reservation_id"] for e in commits} == {order_id}
    [refund] = await market.sent(payments_contract.CancelPayment, order_id)
    assert refund.data["payment_id"] == str(charge.payment_id)
    assert (await market.order(order_id))["status"] == "cancelling"

    await market.pay(charge, "refunded")
    await market.sent(catalog_contract.ReleaseStock, order_id)
    cancelled = await market.settled(order_id, "cancelled")
    assert cancelled["status_reason"] == "timeout"
    [event] = await market.sent(orders_contract.OrderCancelled, order_id)
    assert event.data["reason"] == "timeout"
    assert market.count(catalog_contract.CommitStock, order_id) == 3
    assert market.count(orders_contract.OrderConfirmed, order_id) == 1


async def test_every_order_ends_by_itself_when_nobody_answers(open_market: OpenMarket) -> None:
    """Catalog and payments silent: two orders replicas re-send each step's command on time
    (each exactly once per deadline, never both), then give up, and the order is
    cancelled with reason timeout all the same."""
    market = await open_market(
        real_catalog=False,
        replicas=2,
        reserve_deadline_seconds=0.4,
        reserve_attempts=3,
        release_deadline_seconds=0.4,
        release_attempts=2,
    )
    _, headers, method = market.buyer()
    item = await market.new_item()
    order = await market.place(headers, method, (item, 1))

    cancelled = await market.settled(order["id"], "cancelled")
    assert cancelled["status_reason"] == "timeout"
    [event] = await market.sent(orders_contract.OrderCancelled, order["id"])
    assert event.data["reason"] == "timeout"
    reserves = await market.sent(catalog_contract.ReserveStock, order["id"], count=3)
    assert {e.data["reservation_id"] for e in reserves} == {order["id"]}
    await market.sent(catalog_contract.ReleaseStock, order["id"], count=2)
    await market.sent(orders_contract.OrderSagaStepTimedOut, order["id"], count=3)
    assert market.count(catalog_contract.ReserveStock, order["id"]) == 3
    assert market.count(catalog_contract.ReleaseStock, order["id"]) == 2
    assert market.count(orders_contract.OrderSagaStepTimedOut, order["id"]) == 3


async def test_support_retries_an_order_cancelled_out_of_stock_once_stock_is_back(
    market: Market,
) -> None:
    _, headers, method = market.buyer()
    item = await market.new_item(stock=1)
    order = await market.place(headers, method, (item, 2))
    assert (await market.settled(order["id"], "cancelled"))["status_reason"] == "out_of_stock"
    assert market.catalog is not None
    restock = await market.catalog.patch(
        f"/api/catalog/items/{item}",
        json={"stock": 5},
        headers=market.issuer.headers(market.seller_id, ["seller"]),
    )
    assert restock.status_code == 200

    support = market.headers(None, "support")
    retried = await market.orders.post(f"{ORDERS}/{order['id']}/retry", headers=support)
    assert retried.status_code == 202, retried.text
    assert retried.json()["status"] == "pending"
    assert retried.json()["status_reason"] is None
    [first, second] = await market.sent(catalog_contract.ReserveStock, order["id"], count=2)
    assert first.data["reservation_id"] == order["id"]
    assert second.data["reservation_id"] != order["id"]

    charge = await market.charge(order["id"])
    await market.pay(charge)
    confirmed = await market.settled(order["id"], "confirmed")
    assert confirmed["payment_id"] == str(charge.payment_id)
    assert await market.stock_of(item) == 3
    [retry_event] = await market.sent(orders_contract.OrderRetried, order["id"])
    assert retry_event.data["restarted"] is True


async def test_a_confirmed_order_or_one_a_person_cancelled_is_not_retried(market: Market) -> None:
    _, headers, method = market.buyer()
    item = await market.new_item(stock=5)
    order = await market.place(headers, method, (item, 1))
    await market.pay(await market.charge(order["id"]))
    await market.settled(order["id"], "confirmed")
    support = market.headers(None, "support")
    refused = await market.orders.post(f"{ORDERS}/{order['id']}/retry", headers=support)
    assert refused.status_code == 409
    assert refused.json()["code"] == "order_not_retryable"
    by_customer = await market.orders.post(f"{ORDERS}/{order['id']}/retry", headers=headers)
    assert by_customer.status_code == 403
