"""Sandbox routes (``/v1``): parse, call the provider, shape the answer like a provider would.

A failed charge is answered 402 with a problem document that carries the charge (as
real providers do); a replayed request is marked ``Idempotent-Replayed: true``.
"""

from __future__ import annotations

import asyncio
import hmac
import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, status
from fastapi.responses import JSONResponse, Response

from bazaar.kit.http import problem_response
from bazaar.psp_sandbox.errors import IdempotencyKeyRequired, InvalidApiKey
from bazaar.psp_sandbox.schemas import (
    ChargeCreate,
    ChargeDeclined,
    ChargeList,
    ChargeRead,
    RefundCreate,
    RefundList,
    RefundRead,
    TokenCreate,
    TokenRead,
)
from bazaar.psp_sandbox.service import CardDetails, ChargeRequest, PspSandbox

REPLAYED_HEADER = "Idempotent-Replayed"
_IDEMPOTENCY_KEY = re.compile(r"^[\x20-\x7e]{1,255}$")
# How often a held-back answer checks whether its caller is still there.
_DISCONNECT_POLL_SECONDS = 0.1


async def require_api_key(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> None:
    expected: str = request.app.state.api_key
    if not expected:
        return
    scheme, _, key = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        key.strip().encode(), expected.encode()
    ):
        raise InvalidApiKey()


async def provider(request: Request) -> PspSandbox:
    sandbox: PspSandbox = request.app.state.sandbox
    return sandbox


async def idempotency_key(
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="1-255 printable ASCII characters; repeats replay the first answer",
        ),
    ] = None,
) -> str:
    if key is None or not _IDEMPOTENCY_KEY.match(key):
        raise IdempotencyKeyRequired()
    return key


Provider = Annotated[PspSandbox, Depends(provider)]
IdempotencyKey = Annotated[str, Depends(idempotency_key)]

router = APIRouter(prefix="/v1", tags=["psp-sandbox"], dependencies=[Depends(require_api_key)])

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}


@router.post("/tokens", response_model=TokenRead, status_code=status.HTTP_201_CREATED)
async def create_token(data: TokenCreate, sandbox: Provider) -> TokenRead:
    """Tokenise a card; Luhn-invalid or expired: 422 ``invalid_card_number``/``expired_card``."""
    card = CardDetails(
        number=data.card_number.get_secret_value(),
        exp_month=data.exp_month,
        exp_year=data.exp_year,
    )
    return TokenRead.of(await sandbox.issue_token(card))


@router.post(
    "/charges",
    response_model=ChargeRead,
    status_code=status.HTTP_201_CREATED,
    responses={
        402: {"model": ChargeDeclined, "description": "The charge was made and failed"},
        409: _PROBLEM,
        422: _PROBLEM,
        500: {**_PROBLEM, "description": "processing_error: no charge; retry the same key"},
    },
)
async def create_charge(
    data: ChargeCreate, key: IdempotencyKey, sandbox: Provider, request: Request
) -> Response:
    """Charge a token once per ``Idempotency-Key``; the same request again replays the answer."""
    outcome = await sandbox.charge(
        key,
        ChargeRequest(
            amount=data.amount,
            currency=data.currency,
            token=data.token,
            description=data.description,
            metadata=data.metadata,
        ),
    )
    if outcome.answer_delay > 0:
        await _hold_answer(request, outcome.answer_delay)
    charge = ChargeRead.of(outcome.state)
    headers = {REPLAYED_HEADER: "true"} if outcome.replayed else None
    if charge.status == "failed":
        return problem_response(
            status.HTTP_402_PAYMENT_REQUIRED,
            charge.failure_code or "card_declined",
            "The card was declined",
            charge.failure_message,
            headers=headers,
            charge=charge.model_dump(mode="json"),
        )
    return JSONResponse(
        charge.model_dump(mode="json"), status_code=status.HTTP_201_CREATED, headers=headers
    )


async def _hold_answer(request: Request, delay: float) -> None:
    """Keep the answer back ``delay`` seconds, or until the caller has given up waiting."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + delay
    while (remaining := deadline - loop.time()) > 0:
        if await request.is_disconnected():
            return
        await asyncio.sleep(min(remaining, _DISCONNECT_POLL_SECONDS))


@router.get("/charges", response_model=ChargeList)
async def list_charges(
    sandbox: Provider,
    idempotency_key: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=255,
            description="Only the charge made under this key (how a lost answer is found)",
        ),
    ] = None,
    charge_status: Annotated[Literal["succeeded", "failed"] | None, Query(alias="status")] = None,
) -> ChargeList:
    """Every charge made, oldest first; a key with no charge gives ``{"items": []}``."""
    found = await sandbox.list_charges(idempotency_key=idempotency_key, status=charge_status)
    return ChargeList(items=[ChargeRead.of(state) for state in found])


@router.get("/charges/{charge_id}", response_model=ChargeRead)
async def get_charge(charge_id: str, sandbox: Provider) -> ChargeRead:
    return ChargeRead.of(sandbox.get_charge(charge_id))


@router.post(
    "/charges/{charge_id}/refunds",
    response_model=RefundRead,
    status_code=status.HTTP_201_CREATED,
    responses={404: _PROBLEM, 409: _PROBLEM, 422: _PROBLEM},
)
async def create_refund(
    charge_id: str, key: IdempotencyKey, sandbox: Provider, data: RefundCreate | None = None
) -> Response:
    """Refund all that is left of a charge, or ``amount`` of it; never more than was charged."""
    outcome = await sandbox.refund(charge_id, key, data.amount if data else None)
    return JSONResponse(
        RefundRead.of(outcome.refund).model_dump(mode="json"),
        status_code=status.HTTP_201_CREATED,
        headers={REPLAYED_HEADER: "true"} if outcome.replayed else None,
    )


@router.get("/charges/{charge_id}/refunds", response_model=RefundList)
async def list_refunds(charge_id: str, sandbox: Provider) -> RefundList:
    return RefundList(items=[RefundRead.of(refund) for refund in sandbox.list_refunds(charge_id)])
