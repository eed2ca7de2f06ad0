"""Problems, money and pages as the portal shows them."""

from __future__ import annotations

import orjson
import pytest

from bazaar.portal.money import format_money, format_plain, parse_money
from bazaar.portal.paging import make_pager
from bazaar.portal.problems import FormState, Problem


def test_problem_json_keeps_detail_code_and_field_errors() -> None:
    body = orjson.dumps(
        {
            "type": "https://bazaar.dev/problems/validation_failed",
            "title": "The request is not valid",
            "status": 422,
            "detail": "One or more fields are missing or invalid",
            "code": "validation_failed",
            "errors": [
                {"field": "card_number", "message": "fails the Luhn check"},
                {"field": "items.0.quantity", "message": "at most 1000"},
                {"field": "body", "message": "something else"},
            ],
        }
    )
    problem = Problem.from_response(422, body, {"Retry-After": "3"})
    assert problem.detail == "One or more fields are missing or invalid"
    assert problem.code == "validation_failed"
    assert problem.retry_after == 3
    fields = ["card_number", "quantity"]
    assert problem.field_messages(fields) == {
        "card_number": "fails the Luhn check",
        "quantity": "at most 1000",
    }
    assert [error.field for error in problem.other_errors(fields)] == ["body"]
    form = FormState.failed(problem, {"exp_month": "12"}, fields)
    assert form.errors["card_number"] == "fails the Luhn check"
    assert form.values == {"exp_month": "12"}


def test_oauth_errors_read_as_sentences() -> None:
    described = Problem.from_response(
        400, b'{"error": "invalid_grant", "error_description": "Bad credentials"}'
    )
    assert (described.code, described.detail) == ("invalid_grant", "Bad credentials")
    bare = Problem.from_response(400, b'{"error": "invalid_grant"}')
    assert bare.detail == "The email or password is not right."


def test_an_answer_that_is_not_json_is_still_a_problem() -> None:
    problem = Problem.from_response(502, b"<html>Bad gateway</html>")
    assert problem.status == 502
    assert problem.title == "The platform is not answering"
    assert problem.code == "http_502"


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        (1250, "USD", "$12.50"),
        (123456789, "EUR", "€1,234,567.89"),
        (1250, "JPY", "¥1,250"),
        (5, "CHF", "0.05 CHF"),
        (1234, "KWD", "1.234 KWD"),
        (None, "USD", "—"),
    ],
)
def test_money_is_shown_in_major_units(amount: int | None, currency: str, shown: str) -> None:
    assert format_money(amount, currency) == shown


@pytest.mark.parametrize(
    ("typed", "currency", "minor"),
    [("12.50", "USD", 1250), ("12,5", "EUR", 1250), ("$7", "USD", 700), ("1250", "JPY", 1250)],
)
def test_typed_amounts_become_minor_units(typed: str, currency: str, minor: int) -> None:
    assert parse_money(typed, currency) == minor
    assert parse_money(format_plain(minor, currency), currency) == minor


@pytest.mark.parametrize(
    ("typed", "message"),
    [("", "Enter an amount."), ("abc", "like 12.50"), ("1.234", "at most 2"), ("0", "more than")],
)
def test_wrong_amounts_are_explained(typed: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_money(typed, "USD")
    with pytest.raises(ValueError, match="no decimals"):
        parse_money("1.5", "JPY")


def test_pages_go_forward_and_back_through_the_trail() -> None:
    first = make_pager("/catalog", {"q": "tea"}, cursor=None, trail="", next_cursor="c1")
    assert first.number == 1 and first.previous_url is None
    assert first.next_url == "/catalog?q=tea&cursor=c1&trail=-"
    second = make_pager("/catalog", {"q": "tea"}, cursor="c1", trail="-", next_cursor="c2")
    assert second.number == 2
    assert second.previous_url == "/catalog?q=tea"
    assert second.next_url == "/catalog?q=tea&cursor=c2&trail=-~c1"
    third = make_pager("/catalog", {"q": "tea"}, cursor="c2", trail="-~c1", next_cursor=None)
    assert third.number == 3 and third.next_url is None
    assert third.previous_url == "/catalog?q=tea&cursor=c1&trail=-"
