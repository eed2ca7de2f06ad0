"""Support actions: which route carries each out, what an answer means, which apply to a
problem."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bazaar.contracts.support import SupportActionName
from bazaar.kit.errors import ServiceUnavailable
from bazaar.support.actions import ACTIONS, RetryPolicy, unreachable_verdict, verdict_of
from bazaar.support.problems import KINDS, actions_for
from bazaar.support.repository import PROBLEM_KINDS
from bazaar.support.schemas import ActionName


def test_each_action_goes_to_its_owners_route() -> None:
    assert {name: route.path_for("X") for name, route in ACTIONS.items()} == {
        "cancel_order": "/api/orders/X/cancel",
        "retry_order": "/api/orders/X/retry",
        "refund_payment": "/api/payments/X/cancel",
        "cancel_auction": "/api/auctions/X/cancel",
        "retry_settlement": "/api/auctions/X/settlement/retry",
    }
    assert set(ACTIONS) == set(ActionName.__args__) == set(SupportActionName.__args__)


@pytest.mark.parametrize("status", [200, 202, 204])
def test_an_accepted_call_succeeds(status: int) -> None:
    verdict = verdict_of(status, {"id": "x"})
    assert verdict.outcome == "succeeded"
    assert verdict.code is None


@pytest.mark.parametrize(
    ("status", "code"),
    [(409, "auction_not_cancellable"), (404, "order_not_found"), (403, "forbidden")],
)
def test_a_refusal_fails_with_the_owners_code(status: int, code: str) -> None:
    verdict = verdict_of(status, {"status": status, "code": code, "detail": "why", "title": "t"})
    assert (verdict.outcome, verdict.status, verdict.code, verdict.detail) == (
        "failed",
        status,
        code,
        "why",
    )


def test_a_refusal_without_a_problem_body_gets_a_code_from_its_status() -> None:
    assert verdict_of(405, "Method Not Allowed").code == "http_405"
    assert verdict_of(400, {"error": "invalid_request"}).code == "invalid_request"


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504, 599])
def test_a_busy_or_broken_owner_is_asked_again(status: int) -> None:
    assert verdict_of(status, None).outcome == "retry"


def test_an_unreachable_gateway_is_asked_again() -> None:
    verdict = unreachable_verdict(ServiceUnavailable("no answer"))
    assert (verdict.outcome, verdict.status, verdict.code) == (
        "retry",
        None,
        "service_unavailable",
    )


def test_tries_wait_longer_each_time_up_to_five_minutes() -> None:
    policy = RetryPolicy(attempts=5, first_wait_seconds=2)
    assert [policy.wait_after(n) for n in (1, 2, 3)] == [
        timedelta(seconds=2),
        timedelta(seconds=4),
        timedelta(seconds=8),
    ]
    assert policy.wait_after(30) == timedelta(seconds=300)


def test_every_kind_of_problem_is_described_and_its_actions_exist() -> None:
    assert set(KINDS) == set(PROBLEM_KINDS)
    for kind in KINDS:
        for entity_type in ("order", "auction", "payment", "item", None):
            assert set(actions_for(kind, entity_type)) <= set(ACTIONS)
    assert actions_for("dead_letter", "payment") == ("refund_payment",)
    assert actions_for("dead_letter", "item") == ()
    assert actions_for("order_stuck", None) == ("retry_order", "cancel_order")
