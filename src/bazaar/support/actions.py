"""Corrective actions: which owning-service route carries out each, and what its answer
means. Pure; :mod:`bazaar.support.worker` makes the calls.

Support never changes another service's data: each action is one call to the owning
service's API, through the gateway, with support's client-credentials token.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from bazaar.kit.errors import ServiceUnavailable

# The owning services cap a reason's length (payments: 200); support keeps the full one.
FORWARDED_REASON_CHARS = 200


@dataclass(frozen=True, slots=True)
class ActionRoute:
    """The owning service's route that carries out an action on a target of ``target_type``."""

    target_type: Literal["order", "payment", "auction"]
    path: str

    def path_for(self, target_id: str) -> str:
        return self.path.format(id=target_id)


ACTIONS: Mapping[str, ActionRoute] = {
    "cancel_order": ActionRoute("order", "/api/orders/{id}/cancel"),
    "retry_order": ActionRoute("order", "/api/orders/{id}/retry"),
    "refund_payment": ActionRoute("payment", "/api/payments/{id}/cancel"),
    "cancel_auction": ActionRoute("auction", "/api/auctions/{id}/cancel"),
    "retry_settlement": ActionRoute("auction", "/api/auctions/{id}/settlement/retry"),
}

# Answers worth asking again for: the service was busy, down or behind a failing gateway.
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class Verdict:
    """What an answer means for the action: ``succeeded``, ``failed`` (a refusal, final)
    or ``retry`` (nothing known; ask again later)."""

    outcome: Literal["succeeded", "failed", "retry"]
    status: int | None
    code: str | None
    detail: str | None
    body: Any = None


def verdict_of(status: int, body: Any) -> Verdict:
    """The verdict on an owning service's answer (its problem+json ``code`` on refusal)."""
    problem = body if isinstance(body, Mapping) else {}
    code = _text(problem.get("code")) or _text(problem.get("error"))
    detail = _text(problem.get("detail")) or _text(problem.get("title"))
    if 200 <= status < 300:
        return Verdict("succeeded", status, None, None, body)
    if status in TRANSIENT_STATUSES or status >= 500:
        return Verdict("retry", status, code or f"http_{status}", detail, body)
    return Verdict("failed", status, code or f"http_{status}", detail, body)


def unreachable_verdict(exc: ServiceUnavailable) -> Verdict:
    return Verdict("retry", None, exc.code, exc.detail)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int
    first_wait_seconds: float

    def wait_after(self, attempt: int) -> timedelta:
        return timedelta(seconds=min(self.first_wait_seconds * 2 ** (attempt - 1), 300.0))


def _text(value: Any) -> str | None:
    return value[:2000] if isinstance(value, str) and value else None
