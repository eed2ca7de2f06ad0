"""Card rules: the Luhn check, expiry, and that a card never shows in a record or a repr."""

from __future__ import annotations

from datetime import date

import pytest
from pydantic import ValidationError

from bazaar.payments.provider import Card
from bazaar.payments.schemas import PaymentMethodCreate
from bazaar.payments.service import card_expired, card_fingerprint, luhn_valid


@pytest.mark.parametrize(
    "number",
    [
        "4242424242424242",
        "4000000000000002",
        "4000000000000259",
        "5555555555554444",
        "378282246310005",
    ],
)
def test_test_cards_pass_the_luhn_check(number: str) -> None:
    assert luhn_valid(number)


@pytest.mark.parametrize("number", ["4242424242424241", "1234567812345678", "42424242424242x2", ""])
def test_mistyped_numbers_fail_the_luhn_check(number: str) -> None:
    assert not luhn_valid(number)


@pytest.mark.parametrize(
    ("month", "year", "expired"),
    [(11, 2026, False), (12, 2026, False), (10, 2026, True), (1, 2027, False), (12, 2025, True)],
)
def test_a_card_is_good_through_its_expiry_month(month: int, year: int, expired: bool) -> None:
    assert card_expired(month, year, date(2026, 11, 30)) is expired


def card(**overrides: object) -> PaymentMethodCreate:
    values: dict[str, object] = {
        "card_number": "4242 4242-4242 4242",
        "exp_month": 12,
        "exp_year": 2030,
        "cvc": "123",
    }
    values.update(overrides)
    return PaymentMethodCreate.model_validate(values)


def test_spaces_and_hyphens_are_ignored_and_the_number_stays_secret() -> None:
    data = card()
    assert data.card_number.get_secret_value() == "4242424242424242"
    assert "4242" not in repr(data) and "123" not in repr(data)
    assert "4242424242424242" not in str(data.model_dump())


@pytest.mark.parametrize(
    ("field", "value"),
    [("card_number", "4242"), ("card_number", 4242424242424242), ("cvc", "1"), ("exp_month", "1")],
)
def test_malformed_cards_are_refused_without_echoing_them(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as refused:
        card(**{field: value})
    messages = " ".join(error["msg"] for error in refused.value.errors())
    assert "4242" not in messages


def test_the_idempotency_fingerprint_of_a_card_is_keyed_and_holds_no_number() -> None:
    data = card()
    first = card_fingerprint(data, b"key-one")
    assert first == card_fingerprint(card(), b"key-one")
    assert first != card_fingerprint(data, b"key-two")
    assert first != card_fingerprint(card(cvc="124"), b"key-one")
    assert "4242" not in str(first)


def test_a_card_never_prints_its_number() -> None:
    held = Card(number="4242424242424242", exp_month=3, exp_year=2031, cvc="999")
    assert "4242" not in repr(held) and "999" not in repr(held)
