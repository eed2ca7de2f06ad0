"""Orders routes (``/api/orders``): parse, call the service, shape the answer."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request, status
from fastapi.responses import Response

from bazaar.kit.http import DbSession, require_roles
from bazaar.kit.idempotency import IdempotencyKey, respond_once
from bazaar.kit.pagination import Page
from bazaar.kit.tokens import Principal
from bazaar.orders import service
from bazaar.orders.lookups import Lookups
from bazaar.orders.saga import OrderStatus
from bazaar.orders.schemas import OrderCreate, OrderPage, OrderRead, SalePage
from bazaar.orders.service import SagaPolicy

router = APIRouter(prefix="/api/orders", tags=["orders"])

Customer = Annotated[Principal, Depends(require_roles("customer"))]
Lister = Annotated[Principal, Depends(require_roles("customer", "support", "admin"))]
# Services read and cancel orders for the support desk (the gateway allows them too).
Reader = Annotated[Principal, Depends(require_roles("customer", "support", "admin", "service"))]
Seller = Annotated[Principal, Depends(require_roles("seller"))]
Staff = Annotated[Principal, Depends(require_roles("support", "admin", "service"))]


async def _saga_policy(request: Request) -> SagaPolicy:
    policy: SagaPolicy = request.app.state.saga_policy
    return policy


async def _lookups(request: Request) -> Lookups:
    lookups: Lookups = request.app.state.lookups
    return lookups


Policy = Annotated[SagaPolicy, Depends(_saga_policy)]
OrderLookups = Annotated[Lookups, Depends(_lookups)]


@router.post("", response_model=OrderRead, status_code=status.HTTP_201_CREATED)
async def create_order(
    data: OrderCreate,
    customer: Customer,
    session: DbSession,
    lookups: OrderLookups,
    policy: Policy,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Order catalog items: 201 with the order ``pending`` while its saga reserves the
    stock and charges the payment method; it then becomes ``confirmed`` or ``cancelled``
    by itself. Repeat safely with ``Idempotency-Key``."""

    async def create() -> OrderRead:
        return await service.create_order(
            session, customer, data, lookups=lookups, policy=policy, now=datetime.now(UTC)
        )

    return await respond_once(
        session,
        principal=customer.subject,
        scope="orders.create",
        key=idempotency_key,
        body=data,
        status_code=status.HTTP_201_CREATED,
        action=create,
    )


@router.get("", response_model=OrderPage)
async def list_orders(
    caller: Lister,
    session: DbSession,
    page: Page,
    user_id: uuid.UUID | None = None,
    status: OrderStatus | None = None,
) -> OrderPage:
    """Newest first: a customer's own orders; support and admin: anyone's (``user_id``),
    or everyone's without it."""
    return await service.list_orders(session, caller, page, user_id=user_id, status=status)


@router.get("/sales", response_model=SalePage)
async def list_sales(seller: Seller, session: DbSession, page: Page) -> SalePage:
    """The lines of orders containing the caller's items, with each order's status."""
    return await service.list_sales(session, seller, page)


@router.get("/{order_id}", response_model=OrderRead)
async def get_order(order_id: uuid.UUID, caller: Reader, session: DbSession) -> OrderRead:
    """The order to its buyer, support and admin; to anyone else it does not exist (404)."""
    return await service.get_order(session, caller, order_id)


@router.post("/{order_id}/cancel", response_model=OrderRead, status_code=status.HTTP_202_ACCEPTED)
async def cancel_order(
    order_id: uuid.UUID, caller: Reader, session: DbSession, policy: Policy
) -> OrderRead:
    """202: a pending order stops and is compensated; a confirmed one becomes
    ``cancelling``, is refunded and its stock returned, then ``cancelled``. 409
    ``order_not_cancellable`` once it is cancelled."""
    return await service.request_cancellation(
        session, caller, order_id, policy=policy, now=datetime.now(UTC)
    )


@router.post("/{order_id}/retry", response_model=OrderRead, status_code=status.HTTP_202_ACCEPTED)
async def retry_order(
    order_id: uuid.UUID, caller: Staff, session: DbSession, policy: Policy
) -> OrderRead:
    """Support's corrective action: a pending order's current step is sent again now; an
    order the platform cancelled (``out_of_stock``, ``payment_declined``,
    ``payment_failed``, ``timeout``) starts over, pending, with a new payment. 409
    ``order_not_retryable`` for a confirmed order or one a person cancelled."""
    return await service.retry_order(
        session, caller, order_id, policy=policy, now=datetime.now(UTC)
    )
