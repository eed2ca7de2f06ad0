"""The orders rules: who may order, see and cancel what, and how the saga's decisions
become rows and messages.

Functions take the caller's session and never commit: the request's edge, the
consumer loop or the timer does, so an order's new state, the commands it sends and
the events it announces land in one transaction (the outbox).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypedDict, cast

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.contracts import catalog as catalog_contract
from bazaar.contracts import orders as orders_contract
from bazaar.contracts import payments as payments_contract
from bazaar.contracts.base import Message
from bazaar.kit.errors import Forbidden
from bazaar.kit.logging import get_logger
from bazaar.kit.messaging.outbox import message_envelope, publish_all
from bazaar.kit.pagination import PageParams, cursor_part, decode_cursor, encode_cursor
from bazaar.kit.tokens import Principal
from bazaar.orders import repository, saga
from bazaar.orders.errors import (
    ItemUnavailable,
    MixedCurrencies,
    OrderNotCancellable,
    OrderNotFound,
    OrderNotRetryable,
    PaymentMethodInvalid,
)
from bazaar.orders.lookups import CatalogItem, Lookups
from bazaar.orders.models import Order, OrderLine
from bazaar.orders.saga import CancelReason, Command, Event, OrderStatus, SagaState, Step, Trigger
from bazaar.orders.schemas import (
    OrderCreate,
    OrderLineRead,
    OrderPage,
    OrderRead,
    SaleLineRead,
    SalePage,
)

SOURCE = "bazaar/orders"
STAFF_ROLES = frozenset({"support", "admin"})

log = get_logger(__name__)

SAGA_MOVES = Counter(
    "bazaar_order_saga_moves_total",
    "Order saga transitions, by step left, step entered and what caused it",
    ["from_step", "to_step", "trigger"],
)


@dataclass(frozen=True, slots=True)
class SagaPolicy:
    """The saga's timing and the stock hold it asks for, from the settings."""

    timings: saga.SagaTimings
    hold_seconds: int


# --- the HTTP side -------------------------------------------------------------------


async def create_order(
    session: AsyncSession,
    customer: Principal,
    data: OrderCreate,
    *,
    lookups: Lookups,
    policy: SagaPolicy,
    now: datetime,
) -> OrderRead:
    """Price the cart from the catalog, check the payment method is the caller's, store
    the order pending and start its saga (reserve the stock)."""
    found, owned = await asyncio.gather(
        lookups.catalog_items([line.item_id for line in data.items]),
        lookups.owns_payment_method(uuid.UUID(customer.subject), data.payment_method_id),
        return_exceptions=True,
    )
    if isinstance(found, BaseException):
        raise found
    items = _orderable(data, found)
    if isinstance(owned, BaseException):
        raise owned
    if not owned:
        raise PaymentMethodInvalid(
            errors=[{"field": "payment_method_id", "message": "not a payment method of yours"}]
        )

    order_id = uuid.uuid4()
    lines = [
        OrderLine(
            order_id=order_id,
            line_no=number,
            item_id=line.item_id,
            seller_id=items[line.item_id].seller_id,
            title=items[line.item_id].title,
            unit_price=items[line.item_id].price,
            quantity=line.quantity,
            line_total=items[line.item_id].price * line.quantity,
        )
        for number, line in enumerate(data.items, start=1)
    ]
    start = saga.start(policy.timings)
    order = Order(
        id=order_id,
        user_id=uuid.UUID(customer.subject),
        status=start.state.status,
        total=sum(line.line_total for line in lines),
        currency=items[data.items[0].item_id].currency,
        payment_method_id=data.payment_method_id,
        reservation_id=order_id,
        saga_step=start.state.step.value,
        step_attempts=0,
        created_at=now,
        updated_at=now,
        lines=lines,
    )
    created = orders_contract.OrderCreated(
        **_event_fields(order, now),
        lines=[
            orders_contract.OrderLine(
                item_id=line.item_id,
                title=line.title,
                unit_price=line.unit_price,
                quantity=line.quantity,
                seller_id=line.seller_id,
            )
            for line in lines
        ],
        payment_method_id=order.payment_method_id,
    )
    # The order is written once, already in its first step.
    _set_state(order, start, "created", now=now)
    await repository.add_order(session, order)
    await _publish(session, order, created, *_messages(order, start, policy=policy, now=now))
    log.info("order_created", order_id=str(order.id), total=order.total, currency=order.currency)
    return order_read(order)


def _orderable(
    data: OrderCreate, found: dict[uuid.UUID, CatalogItem]
) -> dict[uuid.UUID, CatalogItem]:
    errors = [
        {"field": f"items.{index}.item_id", "message": "unknown or withdrawn item"}
        for index, line in enumerate(data.items)
        if line.item_id not in found or not found[line.item_id].active
    ]
    if errors:
        raise ItemUnavailable(errors=errors)
    currencies = sorted({found[line.item_id].currency for line in data.items})
    if len(currencies) > 1:
        raise MixedCurrencies(
            f"The items are priced in {', '.join(currencies)}; order them separately",
            errors=[{"field": "items", "message": "items priced in different currencies"}],
        )
    return found


async def get_order(session: AsyncSession, caller: Principal, order_id: uuid.UUID) -> OrderRead:
    return order_read(await _visible_order(session, caller, order_id))


async def list_orders(
    session: AsyncSession,
    caller: Principal,
    page: PageParams,
    *,
    user_id: uuid.UUID | None,
    status: OrderStatus | None,
) -> OrderPage:
    """A customer's own orders; support and admin see anyone's (``user_id``) or all."""
    if not _is_staff(caller):
        if user_id is not None and str(user_id) != caller.subject:
            raise Forbidden("Only support and admin may list another user's orders")
        user_id = uuid.UUID(caller.subject)
    after = None
    if page.cursor:
        created_at, last_id = decode_cursor(page.cursor, 2)
        after = (cursor_part(datetime.fromisoformat, created_at), cursor_part(uuid.UUID, last_id))
    found = await repository.list_orders(
        session, limit=page.limit + 1, user_id=user_id, status=status, after=after
    )
    orders = found[: page.limit]
    more = len(found) > page.limit
    return OrderPage(
        items=[order_read(order) for order in orders],
        next_cursor=encode_cursor(orders[-1].created_at.isoformat(), str(orders[-1].id))
        if more
        else None,
    )


async def list_sales(session: AsyncSession, seller: Principal, page: PageParams) -> SalePage:
    """The lines of orders that contain the seller's items, with each order's status."""
    after = None
    if page.cursor:
        created_at, last_id, line_no = decode_cursor(page.cursor, 3)
        after = (
            cursor_part(datetime.fromisoformat, created_at),
            cursor_part(uuid.UUID, last_id),
            cursor_part(int, line_no),
        )
    found = await repository.list_sales(
        session, uuid.UUID(seller.subject), limit=page.limit + 1, after=after
    )
    rows = found[: page.limit]
    next_cursor = None
    if len(found) > page.limit:
        last_line, last_order = rows[-1]
        next_cursor = encode_cursor(
            last_order.created_at.isoformat(), str(last_order.id), last_line.line_no
        )
    return SalePage(
        items=[
            SaleLineRead(
                order_id=order.id,
                order_status=cast(OrderStatus, order.status),
                item_id=line.item_id,
                title=line.title,
                unit_price=line.unit_price,
                quantity=line.quantity,
                line_total=line.line_total,
                currency=order.currency,
                ordered_at=order.created_at,
            )
            for line, order in rows
        ],
        next_cursor=next_cursor,
    )


async def request_cancellation(
    session: AsyncSession,
    caller: Principal,
    order_id: uuid.UUID,
    *,
    policy: SagaPolicy,
    now: datetime,
) -> OrderRead:
    """Start undoing an order: a pending one stops and is compensated, a confirmed one is
    refunded and its stock returned. Asking again while that runs changes nothing."""
    order = await _visible_order(session, caller, order_id, for_update=True)
    if order.saga_step == Step.CANCELLED:
        raise OrderNotCancellable()
    owner = str(order.user_id) == caller.subject
    trigger = Trigger.CANCEL_BY_USER if owner else Trigger.CANCEL_BY_SUPPORT
    decision = saga.decide(saga_state(order), trigger, policy.timings)
    if decision is not None:
        await _apply(session, order, decision, trigger.value, policy=policy, now=now, actor=caller)
    return order_read(order)


async def retry_order(
    session: AsyncSession,
    caller: Principal,
    order_id: uuid.UUID,
    *,
    policy: SagaPolicy,
    now: datetime,
) -> OrderRead:
    """Support's "try again": a pending order's current step is sent again now with all
    its tries back; an order the platform cancelled (out of stock, payment declined or
    failed, timed out) starts over with a new reservation and a new payment. A confirmed
    order, or one a person cancelled, is not retried (409 ``order_not_retryable``)."""
    order = await _visible_order(session, caller, order_id, for_update=True)
    decision = saga.decide(saga_state(order), Trigger.RETRY, policy.timings)
    if decision is None:
        raise OrderNotRetryable()
    restarted = order.saga_step == Step.CANCELLED
    if restarted:
        order.reservation_id = uuid.uuid4()
        order.payment_id = None
        order.status_reason = None
    await _apply(
        session, order, decision, Trigger.RETRY.value, policy=policy, now=now, actor=caller
    )
    await _publish(
        session,
        order,
        orders_contract.OrderRetried(
            **_event_fields(order, now),
            requested_by=caller.subject,
            restarted=restarted,
            step=order.saga_step,
        ),
    )
    return order_read(order)


async def _visible_order(
    session: AsyncSession, caller: Principal, order_id: uuid.UUID, *, for_update: bool = False
) -> Order:
    order = await repository.get_order(session, order_id, for_update=for_update)
    if order is None or not (str(order.user_id) == caller.subject or _is_staff(caller)):
        raise OrderNotFound()
    return order


def _is_staff(caller: Principal) -> bool:
    """Support, admin, and services (the support desk acting through the gateway)."""
    return caller.has_any(STAFF_ROLES) or caller.is_service


def order_read(order: Order) -> OrderRead:
    return OrderRead(
        id=order.id,
        user_id=order.user_id,
        status=cast(OrderStatus, order.status),
        status_reason=cast(CancelReason | None, order.status_reason),
        items=[
            OrderLineRead(
                item_id=line.item_id,
                title=line.title,
                unit_price=line.unit_price,
                quantity=line.quantity,
                line_total=line.line_total,
            )
            for line in order.lines
        ],
        total=order.total,
        currency=order.currency,
        payment_id=order.payment_id,
        created_at=order.created_at,
        updated_at=order.updated_at,
    )


# --- the saga side -------------------------------------------------------------------


async def advance_saga(
    session: AsyncSession,
    trigger: Trigger,
    *,
    policy: SagaPolicy,
    now: datetime,
    order_id: uuid.UUID | None = None,
    reservation_id: uuid.UUID | None = None,
    payment_id: uuid.UUID | None = None,
) -> bool:
    """Apply an answer from catalog (by ``reservation_id``) or payments (by ``order_id``)
    to the order's saga. An answer the saga's current step does not wait for (late,
    duplicate, about another payment or an earlier round's reservation) changes nothing;
    returns whether the saga moved."""
    # An answer moves the saga without reading the order's lines (one query less per
    # answer); the one command that lists them (a new reservation) loads them first.
    if reservation_id is not None:
        order = await repository.get_order_by_reservation(session, reservation_id, with_lines=False)
    else:
        assert order_id is not None, "an answer names its order or its reservation"
        order = await repository.get_order(session, order_id, for_update=True, with_lines=False)
    if order is None:
        log.warning(
            "saga_answer_for_unknown_order",
            order_id=str(order_id),
            reservation_id=str(reservation_id),
            trigger=trigger,
        )
        return False
    order_id = order.id
    if payment_id is not None and order.payment_id != payment_id:
        log.info("saga_answer_for_other_payment", order_id=str(order_id), trigger=trigger)
        return False
    decision = saga.decide(saga_state(order), trigger, policy.timings)
    if decision is None:
        log.info(
            "saga_answer_ignored", order_id=str(order_id), step=order.saga_step, trigger=trigger
        )
        return False
    if Command.RESERVE_STOCK in decision.commands:
        await repository.load_lines(session, order)
    await _apply(session, order, decision, trigger.value, policy=policy, now=now)
    return True


async def drive_due_sagas(
    session: AsyncSession, *, policy: SagaPolicy, now: datetime, limit: int
) -> int:
    """The timer's work: every saga past its step's deadline sends the step's command
    again, or compensates after the last try. Returns how many sagas were driven."""
    due = await repository.due_sagas(session, now, limit=limit)
    for order in due:
        decision = saga.decide(saga_state(order), Trigger.DEADLINE_PASSED, policy.timings)
        if decision is None:  # ended meanwhile; nothing is due any more
            order.step_deadline = None
            continue
        log.warning(
            "saga_step_deadline_passed",
            order_id=str(order.id),
            step=order.saga_step,
            attempt=order.step_attempts,
        )
        if order.saga_step in saga.COMPENSATING and decision.state.step.value != order.saga_step:
            # Out of tries undoing something: the order still ends, but a person should look.
            log.error(
                "saga_compensation_unconfirmed",
                order_id=str(order.id),
                step=order.saga_step,
                payment_id=str(order.payment_id) if order.payment_id else None,
            )
        await _apply(
            session, order, decision, Trigger.DEADLINE_PASSED.value, policy=policy, now=now
        )
    await session.flush()
    return len(due)


def saga_state(order: Order) -> SagaState:
    return SagaState(
        step=Step(order.saga_step),
        status=cast(OrderStatus, order.status),
        attempts=order.step_attempts,
        cancel_reason=cast(CancelReason | None, order.cancel_reason),
        charge_requested=order.payment_id is not None,
    )


async def _apply(
    session: AsyncSession,
    order: Order,
    decision: saga.Decision,
    cause: str,
    *,
    policy: SagaPolicy,
    now: datetime,
    actor: Principal | None = None,
) -> None:
    """Write the decision on the order and put its commands and events in the outbox."""
    _set_state(order, decision, cause, now=now)
    await session.flush()
    await _publish(session, order, *_messages(order, decision, policy=policy, now=now, actor=actor))


def _set_state(order: Order, decision: saga.Decision, cause: str, *, now: datetime) -> None:
    """The decision's state on the order object (written at the next flush)."""
    state = decision.state
    SAGA_MOVES.labels(order.saga_step, state.step.value, cause).inc()
    order.saga_step = state.step.value
    order.status = state.status
    order.step_attempts = state.attempts
    order.cancel_reason = state.cancel_reason
    order.step_deadline = (
        now + timedelta(seconds=decision.deadline_seconds)
        if decision.deadline_seconds is not None
        else None
    )
    if state.charge_requested and order.payment_id is None:
        order.payment_id = uuid.uuid4()
    if state.step is Step.CANCELLED:
        order.status_reason = state.cancel_reason
    order.updated_at = now


def _messages(
    order: Order,
    decision: saga.Decision,
    *,
    policy: SagaPolicy,
    now: datetime,
    actor: Principal | None = None,
) -> list[Message]:
    """The decision's commands, then its events."""
    return [
        *(_command(order, command, policy) for command in decision.commands),
        *(_event(order, event, now, actor) for event in decision.events),
    ]


def _command(order: Order, command: Command, policy: SagaPolicy) -> Message:
    reason = order.cancel_reason or "order_cancelled"
    match command:
        case Command.RESERVE_STOCK:
            return catalog_contract.ReserveStock(
                reservation_id=order.reservation_id,
                lines=[
                    catalog_contract.StockLine(item_id=line.item_id, quantity=line.quantity)
                    for line in order.lines
                ],
                hold_seconds=policy.hold_seconds,
            )
        case Command.CHARGE_PAYMENT:
            assert order.payment_id is not None
            return payments_contract.ChargePayment(
                payment_id=order.payment_id,
                user_id=order.user_id,
                payment_method_id=order.payment_method_id,
                amount=order.total,
                currency=order.currency,
                reference_type="order",
                reference_id=order.id,
            )
        case Command.COMMIT_STOCK:
            return catalog_contract.CommitStock(reservation_id=order.reservation_id)
        case Command.CANCEL_PAYMENT:
            assert order.payment_id is not None
            return payments_contract.CancelPayment(payment_id=order.payment_id, reason=reason)
        case Command.RELEASE_STOCK:
            return catalog_contract.ReleaseStock(reservation_id=order.reservation_id, reason=reason)


def _event(order: Order, event: Event, now: datetime, actor: Principal | None) -> Message:
    fields = _event_fields(order, now)
    reason = cast(CancelReason, order.cancel_reason or "timeout")
    match event:
        case Event.CONFIRMED:
            assert order.payment_id is not None
            return orders_contract.OrderConfirmed(**fields, payment_id=order.payment_id)
        case Event.CANCELLATION_REQUESTED:
            return orders_contract.OrderCancellationRequested(
                **fields, requested_by=actor.subject if actor else "system", reason=reason
            )
        case Event.CANCELLED:
            return orders_contract.OrderCancelled(
                **fields, reason=reason, payment_id=order.payment_id
            )
        case Event.STEP_TIMED_OUT:
            return orders_contract.OrderSagaStepTimedOut(
                **fields, step=order.saga_step, attempt=order.step_attempts
            )


class _EventFields(TypedDict):
    order_id: uuid.UUID
    user_id: uuid.UUID
    status: OrderStatus
    total: int
    currency: str
    occurred_at: datetime


def _event_fields(order: Order, now: datetime) -> _EventFields:
    return {
        "order_id": order.id,
        "user_id": order.user_id,
        "status": cast(OrderStatus, order.status),
        "total": order.total,
        "currency": order.currency,
        "occurred_at": now,
    }


async def _publish(session: AsyncSession, order: Order, *messages: Message) -> None:
    """Into the outbox in one statement, in order. Every message of one order's saga
    carries the order's id as correlation id; payment commands are keyed by the payment
    (charge and cancel stay in order), the rest by the order."""
    rows = []
    for message in messages:
        key = str(order.id)
        if isinstance(message, payments_contract.ChargePayment | payments_contract.CancelPayment):
            key = str(message.payment_id)
        envelope = message_envelope(
            message, source=SOURCE, key=key, correlation_id=str(order.id), user_id=order.user_id
        )
        rows.append((message.TOPIC, envelope, key))
    await publish_all(session, rows)
