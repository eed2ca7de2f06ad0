"""Users keep cards as payment methods: tokenised at the provider, never stored as numbers."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest

from tests.integration.payments.conftest import CARDS, Payments

METHODS = "/api/payments/methods"


def a_card(**overrides: Any) -> dict[str, Any]:
    card: dict[str, Any] = {
        "card_number": CARDS["approves"],
        "exp_month": 12,
        "exp_year": 2099,
        "cvc": "123",
    }
    card.update(overrides)
    return card


async def test_a_user_adds_a_card_and_sees_only_its_token_details(payments: Payments) -> None:
    user = str(uuid.uuid4())
    created = await payments.client.post(METHODS, json=a_card(), headers=payments.user(user))
    assert created.status_code == 201, created.text
    method = created.json()
    assert method["brand"] == "visa" and method["last4"] == "4242"
    assert (method["exp_month"], method["exp_year"]) == (12, 2099)
    assert set(method) == {"id", "brand", "last4", "exp_month", "exp_year", "created_at"}

    listed = await payments.client.get(METHODS, headers=payments.user(user))
    assert listed.json() == {"items": [method], "next_cursor": None}
    one = await payments.client.get(f"{METHODS}/{method['id']}", headers=payments.user(user))
    assert one.status_code == 200
    assert one.json() == {**method, "user_id": user}


async def test_the_same_idempotency_key_adds_the_card_once(payments: Payments) -> None:
    user = str(uuid.uuid4())
    headers = {**payments.user(user), "Idempotency-Key": "add-card-1"}
    first = await payments.client.post(METHODS, json=a_card(), headers=headers)
    again = await payments.client.post(METHODS, json=a_card(), headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    listed = await payments.client.get(METHODS, headers=payments.user(user))
    assert len(listed.json()["items"]) == 1

    other_card = await payments.client.post(
        METHODS, json=a_card(card_number=CARDS["declines"]), headers=headers
    )
    assert other_card.status_code == 422
    assert other_card.json()["code"] == "idempotency_key_reused"


@pytest.mark.parametrize(
    ("card", "code", "field"),
    [
        (a_card(card_number="4242 4242 4242 4241"), "invalid_card_number", "card_number"),
        (a_card(exp_month=1, exp_year=2020), "expired_card", "exp_year"),
    ],
)
async def test_luhn_invalid_and_expired_cards_are_refused_with_a_clear_code(
    payments: Payments, card: dict[str, Any], code: str, field: str
) -> None:
    response = await payments.client.post(METHODS, json=card, headers=payments.user())
    assert response.status_code == 422
    problem = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert problem["code"] == code
    assert [error["field"] for error in problem["errors"]] == [field]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("card_number", "4242"),
        ("card_number", "4242 4242 4242 424x"),
        ("card_number", 4242424242424242),
        ("card_number", None),
        ("exp_month", 0),
        ("exp_month", 13),
        ("exp_month", "12"),
        ("exp_month", 12.0),
        ("exp_year", 99),
        ("exp_year", "2099"),
        ("cvc", "12"),
        ("cvc", "12345"),
        ("cvc", 123),
        ("unexpected", "field"),
    ],
)
async def test_invalid_cards_are_refused_field_by_field(
    payments: Payments, field: str, value: Any
) -> None:
    user = str(uuid.uuid4())
    response = await payments.client.post(
        METHODS, json=a_card(**{field: value}), headers=payments.user(user)
    )
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "validation_failed"
    assert any(error["field"] == field for error in problem["errors"]), problem
    assert "4242424242424242" not in response.text
    listed = await payments.client.get(METHODS, headers=payments.user(user))
    assert listed.json()["items"] == []


async def test_methods_need_a_user(payments: Payments) -> None:
    assert (await payments.client.post(METHODS, json=a_card())).status_code == 401
    assert (await payments.client.get(METHODS)).status_code == 401
    by_service = await payments.client.post(METHODS, json=a_card(), headers=payments.service())
    assert by_service.status_code == 403


async def test_another_users_method_is_not_found(payments: Payments) -> None:
    owner = str(uuid.uuid4())
    method_id = await payments.add_method(owner)
    stranger = payments.user()

    assert (
        await payments.client.get(f"{METHODS}/{method_id}", headers=stranger)
    ).status_code == 404
    deleted = await payments.client.delete(f"{METHODS}/{method_id}", headers=stranger)
    assert deleted.status_code == 404
    assert deleted.json()["code"] == "payment_method_not_found"
    assert (await payments.client.get(METHODS, headers=stranger)).json()["items"] == []
    # Still there for its owner.
    mine = await payments.client.get(f"{METHODS}/{method_id}", headers=payments.user(owner))
    assert mine.status_code == 200


async def test_services_support_and_admins_see_any_method_with_its_owner(
    payments: Payments,
) -> None:
    owner = str(uuid.uuid4())
    method_id = await payments.add_method(owner)
    for headers in (
        payments.service(),
        payments.support(),
        payments.tokens.headers(roles=["customer", "admin"]),
    ):
        response = await payments.client.get(f"{METHODS}/{method_id}", headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["user_id"] == owner
    missing = await payments.client.get(f"{METHODS}/{uuid.uuid4()}", headers=payments.service())
    assert missing.status_code == 404


async def test_a_deleted_method_disappears_for_everyone(payments: Payments) -> None:
    owner = str(uuid.uuid4())
    method_id = await payments.add_method(owner)
    kept = await payments.add_method(owner)
    deleted = await payments.client.delete(f"{METHODS}/{method_id}", headers=payments.user(owner))
    assert deleted.status_code == 204

    listed = await payments.client.get(METHODS, headers=payments.user(owner))
    assert [method["id"] for method in listed.json()["items"]] == [kept]
    for headers in (payments.user(owner), payments.service()):
        response = await payments.client.get(f"{METHODS}/{method_id}", headers=headers)
        assert response.status_code == 404
    again = await payments.client.delete(f"{METHODS}/{method_id}", headers=payments.user(owner))
    assert again.status_code == 404


async def test_methods_are_listed_newest_first_in_pages(payments: Payments) -> None:
    owner = str(uuid.uuid4())
    made = [await payments.add_method(owner) for _ in range(5)]
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (
            await payments.client.get(METHODS, params=params, headers=payments.user(owner))
        ).json()
        seen.extend(method["id"] for method in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made))


async def test_the_card_number_is_neither_stored_nor_logged(
    payments: Payments, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    number = "4000000000000077"  # any Luhn-valid number approves
    cvc = "987"
    owner = str(uuid.uuid4())
    response = await payments.client.post(
        METHODS,
        json=a_card(card_number=number, cvc=cvc),
        headers={**payments.user(owner), "Idempotency-Key": "card-privacy"},
    )
    assert response.status_code == 201
    method_id = response.json()["id"]
    charge = await payments.client.post(
        "/api/payments",
        json={
            "amount": 1000,
            "currency": "EUR",
            "payment_method_id": method_id,
            "reference_type": "order",
            "reference_id": str(uuid.uuid4()),
        },
        headers=payments.service(),
    )
    assert charge.json()["status"] == "succeeded"

    stored = await payments.dump_tables()
    assert method_id in stored  # the dump does hold the data
    assert number not in stored and "4000 0000 0000 0077" not in stored
    assert f'"{cvc}"' not in stored
    captured = capsys.readouterr()
    logged = caplog.text + captured.out + captured.err
    assert number not in logged
