"""How the sandbox reads a card number: Luhn, brand, behaviour class, expiry."""

from __future__ import annotations

from datetime import date

import pytest

from bazaar.psp_sandbox.ledger import CardBehaviour
from bazaar.psp_sandbox.service import card_behaviour, card_brand, card_expired, luhn_valid

TABLE = {
    "4242424242424242": CardBehaviour.APPROVE,
    "4000000000000002": CardBehaviour.DECLINE,
    "4000000000009995": CardBehaviour.INSUFFICIENT_FUNDS,
    "4000000000000119": CardBehaviour.FAIL_FIRST_ATTEMPT,
    "4000000000000259": CardBehaviour.ANSWER_LATE,
}


@pytest.mark.parametrize(("number", "behaviour"), TABLE.items())
def test_every_card_of_the_table_is_luhn_valid_and_has_its_behaviour(
    number: str, behaviour: CardBehaviour
) -> None:
    assert luhn_valid(number)
    assert card_behaviour(number) is behaviour
    assert card_brand(number) == "visa"


@pytest.mark.parametrize(
    "number", ["4242424242424241", "4000000000000001", "1234567812345678", "42424242424242a2"]
)
def test_numbers_failing_the_luhn_check_are_refused(number: str) -> None:
    assert not luhn_valid(number)


def test_any_other_valid_card_approves() -> None:
    assert luhn_valid("5555555555554444")
    assert card_behaviour("5555555555554444") is CardBehaviour.APPROVE


@pytest.mark.parametrize(
    ("number", "brand"),
    [
        ("5555555555554444", "mastercard"),
        ("2223003122003222", "mastercard"),
        ("378282246310005", "amex"),
        ("6011111111111117", "discover"),
        ("3056930009020004", "unknown"),
    ],
)
def test_brand_comes_from_the_leading_digits(number: str, brand: str) -> None:
    assert card_brand(number) == brand


def test_a_card_is_good_through_the_last_day_of_its_expiry_month() -> None:
    today = date(2026, 11, 30)
    assert not card_expired(11, 2026, today)
    assert not card_expired(1, 2027, today)
    assert card_expired(10, 2026, today)
    assert card_expired(12, 2025, today)
