"""How the provider's answers are sorted: acted, refused, try again, or not known."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bazaar.payments.errors import CardExpired, InvalidCardNumber, ProviderUnavailable
from bazaar.payments.provider import (
    CallOutcome,
    Card,
    ProviderClient,
    charge_key,
    classify_charge,
    classify_lookup,
    classify_refund,
    refund_key,
)

CHARGE = {
    "id": "ch_1",
    "amount": 100,
    "currency": "EUR",
    "status": "succeeded",
    "failure_code": None,
    "refunded_amount": 0,
}
DECLINED = {**CHARGE, "status": "failed", "failure_code": "card_declined"}


def test_keys_derive_from_the_payment_id() -> None:
    assert charge_key("abc") == "pay-abc"
    assert refund_key("abc") == "refund-abc"


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (201, CHARGE, CallOutcome.SUCCEEDED),
        (402, {"code": "card_declined", "charge": DECLINED}, CallOutcome.FAILED),
        (500, {"code": "processing_error"}, CallOutcome.TRANSIENT),
        (503, None, CallOutcome.TRANSIENT),
        (429, None, CallOutcome.TRANSIENT),
        (401, {"code": "invalid_api_key"}, CallOutcome.TRANSIENT),
        (422, {"code": "token_not_found"}, CallOutcome.REFUSED),
        (422, {"code": "idempotency_key_reused"}, CallOutcome.UNKNOWN),
        (201, {"unexpected": True}, CallOutcome.UNKNOWN),
        (302, None, CallOutcome.UNKNOWN),
    ],
)
def test_charge_answers(status: int, body: Any, outcome: CallOutcome) -> None:
    assert classify_charge(status, body)[0] is outcome


def test_a_declined_charge_carries_its_code() -> None:
    outcome, charge, error = classify_charge(402, {"code": "card_declined", "charge": DECLINED})
    assert outcome is CallOutcome.FAILED and error == "card_declined"
    assert charge is not None and charge.failure_code == "card_declined"


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (200, {"items": []}, CallOutcome.NOT_FOUND),
        (200, {"items": [CHARGE]}, CallOutcome.SUCCEEDED),
        (200, {"items": [DECLINED]}, CallOutcome.FAILED),
        (500, None, CallOutcome.TRANSIENT),
        (200, {"items": [{"id": "broken"}]}, CallOutcome.UNKNOWN),
    ],
)
def test_lookup_answers(status: int, body: Any, outcome: CallOutcome) -> None:
    assert classify_lookup(status, body)[0] is outcome


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (201, {"id": "re_1"}, CallOutcome.SUCCEEDED),
        (409, {"code": "charge_already_refunded"}, CallOutcome.SUCCEEDED),
        (409, {"code": "charge_not_refundable"}, CallOutcome.REFUSED),
        (404, {"code": "charge_not_found"}, CallOutcome.REFUSED),
        (502, None, CallOutcome.TRANSIENT),
    ],
)
def test_refund_answers(status: int, body: Any, outcome: CallOutcome) -> None:
    assert classify_refund(status, body)[0] is outcome


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def provider_serving(handler: Handler) -> AsyncIterator[str]:
    """A local HTTP server answering every request with ``handler``; yields its URL."""
    app = web.Application()
    app.router.add_route("*", "/{path:.*}", handler)
    async with TestServer(app) as server:
        yield str(server.make_url("/"))


@asynccontextmanager
async def client_for(base_url: str, timeout_seconds: float = 1) -> AsyncIterator[ProviderClient]:
    client = ProviderClient(base_url, "sk", timeout_seconds=timeout_seconds)
    try:
        yield client
    finally:
        await client.close()


@asynccontextmanager
async def nothing_listening() -> AsyncIterator[str]:
    """A port that is bound but not listening: every connection to it is refused."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{taken.getsockname()[1]}"


@asynccontextmanager
async def not_http() -> AsyncIterator[str]:
    yield "ftp://127.0.0.1:21"


def hanging_up() -> AbstractAsyncContextManager[str]:
    """A provider that reads the request, then closes the connection without answering."""

    async def hang_up(request: web.Request) -> web.StreamResponse:
        await request.read()
        assert request.transport is not None
        request.transport.close()
        return web.Response()

    return provider_serving(hang_up)


def never_answering() -> AbstractAsyncContextManager[str]:
    """A provider that reads the request and answers nothing until the caller gives up."""

    async def wait_forever(request: web.Request) -> web.StreamResponse:
        await request.read()
        await asyncio.Event().wait()  # cancelled when the caller closes the connection
        return web.Response()

    return provider_serving(wait_forever)


@pytest.mark.parametrize(
    ("provider", "outcome"),
    [
        (nothing_listening, CallOutcome.TRANSIENT),
        (not_http, CallOutcome.TRANSIENT),
        (never_answering, CallOutcome.UNKNOWN),
        (hanging_up, CallOutcome.UNKNOWN),
    ],
)
async def test_a_charge_that_may_have_left_is_unknown_one_that_did_not_is_transient(
    provider: Callable[[], AbstractAsyncContextManager[str]], outcome: CallOutcome
) -> None:
    async with provider() as url, client_for(url, timeout_seconds=0.5) as client:
        answer = await client.charge(
            "pay-1", amount=1, currency="EUR", token="tok", description="d", metadata={}
        )
        assert answer.outcome is outcome
        assert answer.idempotency_key == "pay-1" and answer.http_status is None
        # Asking changes nothing at the provider: a failed lookup is always worth repeating.
        assert (await client.find_charge("pay-1")).outcome is CallOutcome.TRANSIENT


async def test_every_charge_try_sends_the_same_request_with_the_key() -> None:
    seen: list[tuple[str | None, bytes]] = []

    async def fail_for_now(request: web.Request) -> web.StreamResponse:
        seen.append((request.headers.get("Idempotency-Key"), await request.read()))
        return web.json_response({"code": "processing_error"}, status=500)

    async with provider_serving(fail_for_now) as url, client_for(url) as client:
        for _ in range(2):
            await client.charge(
                "pay-7", amount=5, currency="EUR", token="tok", description="x", metadata={}
            )
    assert seen[0] == seen[1] and seen[0][0] == "pay-7"


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (422, {"code": "invalid_card_number"}, InvalidCardNumber),
        (422, {"code": "expired_card"}, CardExpired),
        (500, {"code": "processing_error"}, ProviderUnavailable),
    ],
)
async def test_tokenising_maps_refusals_to_clear_errors(
    status: int, body: dict[str, str], error: type[Exception]
) -> None:
    async def refuse(request: web.Request) -> web.StreamResponse:
        return web.json_response(body, status=status)

    card = Card(number="4242424242424242", exp_month=1, exp_year=2030, cvc="123")
    async with provider_serving(refuse) as url, client_for(url) as client:
        with pytest.raises(error) as raised:
            await client.tokenize(card)
    assert "4242424242424242" not in str(raised.value)
