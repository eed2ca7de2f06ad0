"""Services (and admins) carry out payments over HTTP; owners, support and admins read them."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from tests.integration.payments.conftest import CARDS, Payments

PAYMENTS = "/api/payments"
FIELDS = {
    "id",
    "user_id",
    "amount",
    "currency",
    "status",
    "failure_code",
    "reference_type",
    "reference_id",
    "refunded_amount",
    "created_at",
    "updated_at",
}


def a_payment(method_id: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "amount": 1999,
        "currency": "USD",
        "payment_method_id": method_id,
        "reference_type": "order",
        "reference_id": str(uuid.uuid4()),
    }
    body.update(overrides)
    return body


async def test_a_service_carries_out_a_payment_and_the_owner_reads_it(
    payments: Payments,
) -> None:
    owner = str(uuid.uuid4())
    method_id = await payments.add_method(owner)
    body = a_payment(method_id)
    response = await payments.client.post(PAYMENTS, json=body, headers=payments.service())
    assert response.status_code == 201, response.text
    payment = response.json()
    assert set(payment) == FIELDS
    assert payment["status"] == "succeeded" and payment["failure_code"] is None
    assert payment["user_id"] == owner
    assert (payment["amount"], payment["currency"]) == (1999, "USD")
    assert payment["reference_id"] == body["reference_id"] and payment["refunded_amount"] == 0

    read = await payments.client.get(f"{PAYMENTS}/{payment['id']}", headers=payments.user(owner))
    assert read.status_code == 200 and read.json() == payment
    charges = await payments.sandbox.charges(f"pay-{payment['id']}")
    assert [(c["amount"], c["currency"], c["status"]) for c in charges] == [
        (1999, "USD", "succeeded")
    ]


async def test_a_declined_card_is_answered_as_a_failed_payment(payments: Payments) -> None:
    method_id = await payments.add_method(str(uuid.uuid4()), CARDS["insufficient_funds"])
    response = await payments.client.post(
        PAYMENTS, json=a_payment(method_id), headers=payments.service()
    )
    assert response.status_code == 201
    assert response.json()["status"] == "failed"
    assert response.json()["failure_code"] == "insufficient_funds"


async def test_a_slow_provider_leaves_the_payment_processing_until_it_is_known(
    payments: Payments,
) -> None:
    owner = str(uuid.uuid4())
    method_id = await payments.add_method(owner, CARDS["answers_late"])
    response = await payments.client.post(
        PAYMENTS, json=a_payment(method_id), headers=payments.service()
    )
    assert response.status_code == 201
    assert response.json()["status"] == "processing"
    pid = response.json()["id"]

    await payments.wait_status(pid, "succeeded")
    read = await payments.client.get(f"{PAYMENTS}/{pid}", headers=payments.user(owner))
    assert read.json()["status"] == "succeeded"
    assert len(await payments.sandbox.charges(f"pay-{pid}")) == 1


@pytest.mark.parametrize("roles", [["customer"], ["customer", "seller"], ["customer", "support"]])
async def test_only_services_and_admins_carry_out_payments(
    payments: Payments, roles: list[str]
) -> None:
    method_id = await payments.add_method(str(uuid.uuid4()))
    response = await payments.client.post(
        PAYMENTS, json=a_payment(method_id), headers=payments.tokens.headers(roles=roles)
    )
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
    by_admin = await payments.client.post(
        PAYMENTS,
        json=a_payment(method_id),
        headers=payments.tokens.headers(roles=["customer", "admin"]),
    )
    assert by_admin.status_code == 201


async def test_six_concurrent_requests_with_one_key_make_one_payment_and_one_charge(
    payments: Payments,
) -> None:
    owner = str(uuid.uuid4())
    method_id = await payments.add_method(owner)
    body = a_payment(method_id)
    headers = {**payments.service(), "Idempotency-Key": f"order-{body['reference_id']}"}

    responses = await asyncio.gather(
        *(payments.client.post(PAYMENTS, json=body, headers=headers) for _ in range(6))
    )
    assert [r.status_code for r in responses] == [201] * 6
    answers = [r.json() for r in responses]
    assert all(answer == answers[0] for answer in answers)
    assert answers[0]["status"] == "succeeded"

    listed = await payments.client.get(
        PAYMENTS, params={"user_id": owner}, headers=payments.support()
    )
    assert [p["id"] for p in listed.json()["items"]] == [answers[0]["id"]]
    assert len(await payments.sandbox.charges(f"pay-{answers[0]['id']}")) == 1

    later = await payments.client.post(PAYMENTS, json=body, headers=headers)
    assert later.json() == answers[0]
    assert later.headers["idempotent-replayed"] == "true"
    reused = await payments.client.post(PAYMENTS, json={**body, "amount": 1}, headers=headers)
    assert reused.status_code == 422
    assert reused.json()["code"] == "idempotency_key_reused"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount", 0),
        ("amount", -100),
        ("amount", 12.5),
        ("amount", "100"),
        ("amount", True),
        ("amount", 100_000_000),
        ("amount", None),
        ("currency", "usd"),
        ("currency", "US"),
        ("currency", "USDT"),
        ("currency", 840),
        ("payment_method_id", "not-a-uuid"),
        ("payment_method_id", None),
        ("reference_type", "cart"),
        ("reference_type", None),
        ("reference_id", "42"),
        ("unexpected", "field"),
    ],
)
async def test_invalid_payments_are_refused_field_by_field(
    payments: Payments, field: str, value: Any
) -> None:
    method_id = await payments.add_method(str(uuid.uuid4()))
    response = await payments.client.post(
        PAYMENTS, json=a_payment(method_id, **{field: value}), headers=payments.service()
    )
    assert response.status_code == 422, response.text
    problem = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert problem["code"] == "validation_failed"
    assert any(error["field"] == field for error in problem["errors"]), problem
    listed = await payments.client.get(PAYMENTS, headers=payments.support())
    assert listed.json()["items"] == []


async def test_missing_fields_are_refused(payments: Payments) -> None:
    response = await payments.client.post(PAYMENTS, json={}, headers=payments.service())
    assert response.status_code == 422
    missing = {error["field"] for error in response.json()["errors"]}
    assert missing == {"amount", "currency", "payment_method_id", "reference_type", "reference_id"}


async def test_an_unknown_or_deleted_method_is_refused(payments: Payments) -> None:
    owner = str(uuid.uuid4())
    method_id = await payments.add_method(owner)
    await payments.client.delete(f"/api/payments/methods/{method_id}", headers=payments.user(owner))
    for candidate in (method_id, str(uuid.uuid4())):
        response = await payments.client.post(
            PAYMENTS,
            json=a_payment(candidate),
            headers={**payments.service(), "Idempotency-Key": f"k-{candidate}"},
        )
        assert response.status_code == 422
        assert response.json()["code"] == "payment_method_invalid"
        assert response.json()["errors"][0]["field"] == "payment_method_id"


async def test_another_users_payment_is_not_found(payments: Payments) -> None:
    owner = str(uuid.uuid4())
    method_id = await payments.add_method(owner)
    pid = (
        await payments.client.post(PAYMENTS, json=a_payment(method_id), headers=payments.service())
    ).json()["id"]

    stranger = await payments.client.get(f"{PAYMENTS}/{pid}", headers=payments.user())
    assert stranger.status_code == 404
    assert stranger.json()["code"] == "payment_not_found"
    for headers in (payments.support(), payments.tokens.headers(roles=["customer", "admin"])):
        assert (await payments.client.get(f"{PAYMENTS}/{pid}", headers=headers)).status_code == 200
    missing = await payments.client.get(f"{PAYMENTS}/{uuid.uuid4()}", headers=payments.support())
    assert missing.status_code == 404
    assert (await payments.client.get(f"{PAYMENTS}/{pid}")).status_code == 401


async def test_lists_show_customers_their_own_and_support_anyones(payments: Payments) -> None:
    alice, bob = str(uuid.uuid4()), str(uuid.uuid4())
    alice_method = await payments.add_method(alice)
    bob_method = await payments.add_method(bob)
    made = []
    for _ in range(5):
        response = await payments.client.post(
            PAYMENTS, json=a_payment(alice_method), headers=payments.service()
        )
        made.append(response.json()["id"])
    await payments.client.post(PAYMENTS, json=a_payment(bob_method), headers=payments.service())

    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (
            await payments.client.get(PAYMENTS, params=params, headers=payments.user(alice))
        ).json()
        seen.extend(p["id"] for p in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made))

    as_support = await payments.client.get(
        PAYMENTS, params={"user_id": bob}, headers=payments.support()
    )
    assert [p["user_id"] for p in as_support.json()["items"]] == [bob]
    everyone = await payments.client.get(PAYMENTS, headers=payments.support())
    assert len(everyone.json()["items"]) == 6
    prying = await payments.client.get(
        PAYMENTS, params={"user_id": bob}, headers=payments.user(alice)
    )
    assert prying.status_code == 403


@pytest.mark.parametrize(
    "params", [{"limit": 0}, {"limit": 101}, {"cursor": "nope"}, {"status": "lost"}]
)
async def test_bad_list_parameters_are_422(payments: Payments, params: dict[str, Any]) -> None:
    response = await payments.client.get(PAYMENTS, params=params, headers=payments.support())
    assert response.status_code == 422


async def test_the_service_publishes_its_openapi_document(payments: Payments) -> None:
    response = await payments.client.get("/api/payments/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {"/api/payments", "/api/payments/{payment_id}", "/api/payments/methods"} <= set(paths)
