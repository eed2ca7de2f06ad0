"""Payments routes (``/api/payments``): parse, call the service or processor, shape the answer."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.responses import JSONResponse

from bazaar.kit.http import CurrentPrincipal, DbSession, require_roles
from bazaar.kit.idempotency import IdempotencyKey, JSONBytesResponse, respond_once
from bazaar.kit.pagination import Page
from bazaar.kit.tokens import Principal
from bazaar.payments import service
from bazaar.payments.errors import PaymentNotFound
from bazaar.payments.processor import PaymentProcessor
from bazaar.payments.provider import ProviderClient
from bazaar.payments.schemas import (
    PaymentCancel,
    PaymentCreate,
    PaymentMethodCreate,
    PaymentMethodDetail,
    PaymentMethodPage,
    PaymentMethodRead,
    PaymentPage,
    PaymentRead,
    PaymentStatusName,
    ReferenceType,
)

router = APIRouter(prefix="/api/payments", tags=["payments"])

User = Annotated[Principal, Depends(require_roles("customer", "seller", "support", "admin"))]
Operator = Annotated[Principal, Depends(require_roles("service", "admin"))]
Canceller = Annotated[Principal, Depends(require_roles("service", "support", "admin"))]


async def provider(request: Request) -> ProviderClient:
    client: ProviderClient = request.app.state.provider
    return client


async def processor(request: Request) -> PaymentProcessor:
    payments: PaymentProcessor = request.app.state.processor
    return payments


async def card_fingerprint_key(request: Request) -> bytes:
    key: bytes = request.app.state.card_fingerprint_key
    return key


Provider = Annotated[ProviderClient, Depends(provider)]
Processor = Annotated[PaymentProcessor, Depends(processor)]
FingerprintKey = Annotated[bytes, Depends(card_fingerprint_key)]


# --- payment methods (declared before /{payment_id}, which would match "methods") ------


@router.post(
    "/methods",
    response_model=PaymentMethodRead,
    status_code=status.HTTP_201_CREATED,
    responses={422: {"description": "invalid_card_number, expired_card or invalid fields"}},
)
async def add_method(
    data: PaymentMethodCreate,
    owner: User,
    session: DbSession,
    payments_provider: Provider,
    fingerprint_key: FingerprintKey,
    key: IdempotencyKey = None,
) -> JSONResponse:
    """Keep a card: the provider tokenises it; only the token, brand, last four and expiry
    are stored."""
    token = await service.tokenize_card(owner, data, payments_provider)
    return await respond_once(
        session,
        principal=owner.subject,
        scope="payments.methods.create",
        key=key,
        body=service.card_fingerprint(data, fingerprint_key),
        status_code=status.HTTP_201_CREATED,
        action=lambda: service.add_method(session, owner, token),
    )


@router.get("/methods", response_model=PaymentMethodPage)
async def list_methods(owner: User, session: DbSession, page: Page) -> PaymentMethodPage:
    """The caller's methods, newest first."""
    return await service.list_methods(session, owner, page)


@router.get("/methods/{method_id}", response_model=PaymentMethodDetail)
async def get_method(
    method_id: uuid.UUID, caller: CurrentPrincipal, session: DbSession
) -> PaymentMethodDetail:
    """One method: its owner's, or any for services, support and admins (deleted: 404)."""
    return await service.get_method(session, caller, method_id)


@router.delete("/methods/{method_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_method(method_id: uuid.UUID, owner: User, session: DbSession) -> Response:
    await service.delete_method(session, owner, method_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- payments --------------------------------------------------------------------------


@router.post(
    "",
    response_model=PaymentRead,
    status_code=status.HTTP_201_CREATED,
    responses={422: {"description": "invalid fields, payment_method_invalid"}},
)
async def carry_out_payment(
    data: PaymentCreate,
    caller: Operator,
    payments: Processor,
    key: IdempotencyKey = None,
) -> JSONResponse:
    """Charge the method's owner now and answer with the payment: ``succeeded`` or
    ``failed``, or ``processing`` while the provider's answer is not known yet."""
    answer = await payments.carry_out(caller, data, key)
    return JSONBytesResponse(
        answer.body,
        status_code=answer.status_code,
        headers={"Idempotent-Replayed": "true"} if answer.replayed else None,
    )


@router.get("", response_model=PaymentPage)
async def list_payments(
    caller: CurrentPrincipal,
    session: DbSession,
    page: Page,
    user_id: uuid.UUID | None = None,
    reference_type: ReferenceType | None = None,
    reference_id: uuid.UUID | None = None,
    payment_status: Annotated[PaymentStatusName | None, Query(alias="status")] = None,
) -> PaymentPage:
    """The caller's payments; services, support and admins see all, or ``?user_id=``'s."""
    return await service.list_payments(
        session,
        caller,
        page,
        user_id=user_id,
        reference_type=reference_type,
        reference_id=reference_id,
        status=payment_status,
    )


@router.get("/{payment_id}", response_model=PaymentRead)
async def get_payment(
    payment_id: uuid.UUID, caller: CurrentPrincipal, session: DbSession
) -> PaymentRead:
    return await service.get_payment(session, caller, payment_id)


@router.post(
    "/{payment_id}/cancel", response_model=PaymentRead, status_code=status.HTTP_202_ACCEPTED
)
async def cancel_payment(
    payment_id: uuid.UUID,
    caller: Canceller,
    session: DbSession,
    data: PaymentCancel | None = None,
) -> PaymentRead:
    """Void a payment not yet charged, refund one that succeeded; the outcome follows as
    an event (and in the payment's status)."""
    reason = data.reason if data is not None else f"cancelled by {caller.subject}"
    payment = await service.request_cancel(session, payment_id, reason, None)
    if payment is None:
        raise PaymentNotFound()
    return service.payment_view(payment)
