"""The HTTP surface in-process: status codes, shapes, headers and problem codes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from bazaar.kit.config import PlatformSettings
from bazaar.psp_sandbox.app import create_app
from bazaar.psp_sandbox.settings import PspSandboxSettings
from tests.unit.psp_sandbox.conftest import (
    ANSWERS_LATE,
    APPROVES,
    DECLINES,
    FAILS_FIRST,
    INSUFFICIENT_FUNDS,
)

API_KEY = "sk_test_unit"
CHARGE_FIELDS = {
    "id",
    "amount",
    "currency",
    "status",
    "failure_code",
    "failure_message",
    "idempotency_key",
    "refunded_amount",
    "refunded",
    "description",
    "metadata",
    "card",
    "created_at",
}


async def client_for(settings: PspSandboxSettings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, PlatformSettings(log_format="console"))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://sandbox",
            headers={"Authorization": f"Bearer {API_KEY}"},
        ) as client,
    ):
        yield client


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = PspSandboxSettings(
        data_dir=tmp_path, slow_card_delay_seconds=0.2, api_key=SecretStr(API_KEY)
    )
    async for client in client_for(settings):
        yield client


async def tokenise(client: httpx.AsyncClient, number: str) -> str:
    response = await client.post(
        "/v1/tokens",
        json={"card_number": number, "exp_month": 12, "exp_year": 2099, "cvc": "123"},
    )
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


async def charge(
    client: httpx.AsyncClient, key: str, token: str, amount: int = 1250
) -> httpx.Response:
    return await client.post(
        "/v1/charges",
        headers={"Idempotency-Key": key},
        json={"amount": amount, "currency": "USD", "token": token},
    )


async def test_v1_needs_the_api_key_and_health_does_not(client: httpx.AsyncClient) -> None:
    missing = await client.get("/v1/charges", headers={"Authorization": ""})
    wrong = await client.get("/v1/charges", headers={"Authorization": "Bearer sk_test_wrong"})
    health = await client.get("/healthz", headers={"Authorization": ""})

    for refused in (missing, wrong):
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "invalid_api_key"
        assert refused.headers["www-authenticate"].startswith("Bearer")
    assert health.status_code == 200


async def test_an_empty_api_key_setting_turns_the_check_off(tmp_path: Path) -> None:
    settings = PspSandboxSettings(data_dir=tmp_path, api_key=SecretStr(""))
    async for client in client_for(settings):
        response = await client.get("/v1/charges", headers={"Authorization": ""})
        assert response.json() == {"items": []}


async def test_a_token_describes_the_card_without_its_number(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/tokens",
        json={"card_number": "4242 4242 4242 4242", "exp_month": 3, "exp_year": 2099, "cvc": "123"},
    )

    assert response.status_code == 201
    body = response.json()
    assert body["token"].startswith("tok_")
    assert {k: body[k] for k in ("brand", "last4", "exp_month", "exp_year")} == {
        "brand": "visa",
        "last4": "4242",
        "exp_month": 3,
        "exp_year": 2099,
    }
    assert APPROVES not in response.text


@pytest.mark.parametrize(
    ("card", "code", "field"),
    [
        ({"card_number": "4242424242424241"}, "invalid_card_number", "card_number"),
        ({"exp_month": 1, "exp_year": 2001}, "expired_card", "exp_year"),
        ({"card_number": "4242-abcd"}, "validation_failed", "card_number"),
        ({"exp_month": 13}, "validation_failed", "exp_month"),
        ({"cvc": "12"}, "validation_failed", "cvc"),
    ],
)
async def test_an_invalid_card_is_refused_with_422(
    client: httpx.AsyncClient, card: dict[str, Any], code: str, field: str
) -> None:
    body = {"card_number": APPROVES, "exp_month": 12, "exp_year": 2099, "cvc": "123", **card}

    response = await client.post("/v1/tokens", json=body)

    assert response.status_code == 422
    problem = response.json()
    assert problem["code"] == code
    assert [error["field"] for error in problem["errors"]] == [field]
    assert "4242424242424241" not in response.text


async def test_a_charge_needs_an_idempotency_key(client: httpx.AsyncClient) -> None:
    token = await tokenise(client, APPROVES)
    for headers in ({}, {"Idempotency-Key": ""}, {"Idempotency-Key": "x" * 256}):
        response = await client.post(
            "/v1/charges", headers=headers, json={"amount": 1, "currency": "USD", "token": token}
        )
        assert response.status_code == 400
        assert response.json()["code"] == "idempotency_key_required"
    assert (await client.get("/v1/charges")).json() == {"items": []}


async def test_an_approved_charge_is_201_and_its_repeat_is_a_replay(
    client: httpx.AsyncClient,
) -> None:
    token = await tokenise(client, APPROVES)

    first = await charge(client, "order-1", token)
    again = await charge(client, "order-1", token)

    assert first.status_code == again.status_code == 201
    body = first.json()
    assert set(body) == CHARGE_FIELDS
    assert body["id"].startswith("ch_")
    assert (body["amount"], body["currency"], body["status"]) == (1250, "USD", "succeeded")
    assert (body["idempotency_key"], body["refunded_amount"]) == ("order-1", 0)
    assert body["card"] == {"brand": "visa", "last4": "4242"}
    assert body["created_at"].endswith("Z")
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == body


@pytest.mark.parametrize(
    ("number", "failure_code"),
    [(DECLINES, "card_declined"), (INSUFFICIENT_FUNDS, "insufficient_funds")],
)
async def test_a_declined_charge_is_402_with_the_failed_charge(
    client: httpx.AsyncClient, number: str, failure_code: str
) -> None:
    token = await tokenise(client, number)

    response = await charge(client, "order-1", token)

    assert response.status_code == 402
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == failure_code
    assert problem["charge"]["status"] == "failed"
    assert problem["charge"]["failure_code"] == failure_code
    listed = (await client.get("/v1/charges", params={"idempotency_key": "order-1"})).json()
    assert listed["items"] == [problem["charge"]]
    replay = await charge(client, "order-1", token)
    assert (replay.status_code, replay.json()) == (402, problem)
    assert replay.headers["idempotent-replayed"] == "true"


async def test_the_same_key_with_another_body_is_422(client: httpx.AsyncClient) -> None:
    token = await tokenise(client, APPROVES)
    await charge(client, "order-1", token, amount=100)

    response = await charge(client, "order-1", token, amount=200)

    assert response.status_code == 422
    assert response.json()["code"] == "idempotency_key_reused"


async def test_the_fails_first_card_answers_500_then_approves(client: httpx.AsyncClient) -> None:
    token = await tokenise(client, FAILS_FIRST)

    first = await charge(client, "order-1", token)
    assert (await client.get("/v1/charges")).json() == {"items": []}
    retry = await charge(client, "order-1", token)

    assert first.status_code == 500
    assert first.json()["code"] == "processing_error"
    assert retry.status_code == 201
    assert retry.json()["status"] == "succeeded"


async def test_the_late_card_answers_201_after_its_delay(client: httpx.AsyncClient) -> None:
    response = await charge(client, "order-1", await tokenise(client, ANSWERS_LATE))

    assert response.status_code == 201
    assert response.json()["status"] == "succeeded"


async def test_an_unknown_token_is_422(client: httpx.AsyncClient) -> None:
    response = await charge(client, "order-1", "tok_unknown")

    assert response.status_code == 422
    assert response.json()["code"] == "token_not_found"


async def test_charges_are_read_by_id_and_by_key(client: httpx.AsyncClient) -> None:
    made = (await charge(client, "order-1", await tokenise(client, APPROVES))).json()

    by_id = await client.get(f"/v1/charges/{made['id']}")
    by_key = await client.get("/v1/charges", params={"idempotency_key": "order-1"})
    no_key = await client.get("/v1/charges", params={"idempotency_key": "order-2"})
    missing = await client.get("/v1/charges/ch_missing")

    assert by_id.json() == made
    assert by_key.json() == {"items": [made]}
    assert no_key.json() == {"items": []}
    assert missing.status_code == 404
    assert missing.json()["code"] == "charge_not_found"


async def test_refunds_partial_full_and_too_much(client: httpx.AsyncClient) -> None:
    made = (await charge(client, "order-1", await tokenise(client, APPROVES), 1000)).json()
    refunds = f"/v1/charges/{made['id']}/refunds"

    partial = await client.post(refunds, headers={"Idempotency-Key": "r1"}, json={"amount": 400})
    too_much = await client.post(refunds, headers={"Idempotency-Key": "r2"}, json={"amount": 601})
    rest = await client.post(refunds, headers={"Idempotency-Key": "r3"})
    replay = await client.post(refunds, headers={"Idempotency-Key": "r1"}, json={"amount": 400})
    nothing_left = await client.post(refunds, headers={"Idempotency-Key": "r4"})

    assert partial.status_code == 201
    assert partial.json()["id"].startswith("re_")
    assert {k: partial.json()[k] for k in ("charge_id", "amount", "currency", "status")} == {
        "charge_id": made["id"],
        "amount": 400,
        "currency": "USD",
        "status": "succeeded",
    }
    assert too_much.status_code == 409
    assert too_much.json()["code"] == "amount_exceeds_refundable"
    assert too_much.json()["refundable_amount"] == 600
    assert (rest.status_code, rest.json()["amount"]) == (201, 600)
    assert (replay.status_code, replay.json()) == (201, partial.json())
    assert replay.headers["idempotent-replayed"] == "true"
    assert nothing_left.status_code == 409
    assert nothing_left.json()["code"] == "charge_already_refunded"
    after = (await client.get(f"/v1/charges/{made['id']}")).json()
    assert (after["refunded_amount"], after["refunded"]) == (1000, True)
    listed = (await client.get(refunds)).json()["items"]
    assert [refund["amount"] for refund in listed] == [400, 600]


async def test_a_failed_charge_cannot_be_refunded(client: httpx.AsyncClient) -> None:
    problem = (await charge(client, "order-1", await tokenise(client, DECLINES))).json()

    response = await client.post(
        f"/v1/charges/{problem['charge']['id']}/refunds", headers={"Idempotency-Key": "r1"}
    )

    assert response.status_code == 409
    assert response.json()["code"] == "charge_not_refundable"


async def test_the_openapi_document_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/psp_sandbox/openapi.json")

    assert response.status_code == 200
    assert "/v1/charges/{charge_id}/refunds" in response.json()["paths"]
