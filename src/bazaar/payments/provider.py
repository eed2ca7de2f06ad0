"""The payment provider's HTTP API, as the payments service uses it.

Every call is one HTTP request with a deadline, and its answer is sorted into what
the caller must do next (:class:`CallOutcome`): the provider acted, refused for
good, failed without acting (try the same call again), or left us not knowing
(the request may have taken effect: ask before doing anything else). Retries are
the processor's business, so that each attempt is recorded.

Card numbers pass through :meth:`ProviderClient.tokenize` and nowhere else; they are
never logged and never part of an exception.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import aiohttp
import orjson
from prometheus_client import Histogram

from bazaar.payments.errors import CardExpired, InvalidCardNumber, ProviderUnavailable

PROVIDER_CALLS = Histogram(
    "bazaar_payments_provider_call_seconds",
    "Calls to the payment provider, by kind and outcome",
    ["kind", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

# Errors raised before the request left this process: nothing can have happened. A
# connector error is a connection that could not be made (refused, DNS, TLS); a
# connection timeout is one not made, or not free in the pool, in time; a bad URL
# fails before any connection. Every other error (the server hung up, a broken body,
# a socket error on an open connection, the deadline) may come after the request left.
_NOT_SENT = (
    aiohttp.ClientConnectorError,
    aiohttp.ConnectionTimeoutError,
    aiohttp.InvalidURL,
    aiohttp.NonHttpUrlClientError,
)
_TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class CallOutcome(StrEnum):
    SUCCEEDED = "succeeded"  # a succeeded charge exists / the refund was made
    FAILED = "failed"  # the provider made a failed (declined) charge
    NOT_FOUND = "not_found"  # a lookup: no charge under that key, none in flight
    REFUSED = "refused"  # the provider will never do this request; it did nothing
    TRANSIENT = "transient_error"  # nothing was done; the same call may be sent again
    UNKNOWN = "unknown"  # the request may or may not have taken effect


@dataclass(frozen=True, slots=True)
class ProviderCharge:
    id: str
    status: str
    failure_code: str | None
    amount: int
    currency: str
    refunded_amount: int

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> ProviderCharge:
        return cls(
            id=str(body["id"]),
            status=str(body["status"]),
            failure_code=body.get("failure_code"),
            amount=int(body["amount"]),
            currency=str(body["currency"]),
            refunded_amount=int(body.get("refunded_amount", 0)),
        )


@dataclass(frozen=True, slots=True)
class ProviderAnswer:
    """What one call came back with, and everything a payment attempt record keeps."""

    kind: str
    idempotency_key: str
    outcome: CallOutcome
    http_status: int | None = None
    error: str | None = None
    charge: ProviderCharge | None = None
    duration_ms: int = 0


@dataclass(frozen=True, slots=True)
class CardToken:
    token: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int


@dataclass(frozen=True)
class Card:
    """A card as a customer sent it; lives for one request, never stored or printed."""

    number: str
    exp_month: int
    exp_year: int
    cvc: str

    def __repr__(self) -> str:
        return f"Card(****, {self.exp_month:02d}/{self.exp_year})"


def charge_key(payment_id: object) -> str:
    """The idempotency key of a payment's charge: the same for every try, forever."""
    return f"pay-{payment_id}"


def refund_key(payment_id: object) -> str:
    return f"refund-{payment_id}"


def classify_charge(status: int, body: Any) -> tuple[CallOutcome, ProviderCharge | None, str]:
    """Sort a ``POST /v1/charges`` answer: (outcome, the charge if one was made, error)."""
    code = _problem_code(body)
    if status == 201 and isinstance(body, dict):
        try:
            return CallOutcome.SUCCEEDED, ProviderCharge.from_json(body), ""
        except (KeyError, TypeError, ValueError):
            return CallOutcome.UNKNOWN, None, "unreadable charge"
    if status == 402 and isinstance(body, dict) and isinstance(body.get("charge"), dict):
        try:
            return CallOutcome.FAILED, ProviderCharge.from_json(body["charge"]), code
        except (KeyError, TypeError, ValueError):
            return CallOutcome.UNKNOWN, None, "unreadable declined charge"
    if status == 422 and code == "idempotency_key_reused":
        # A charge exists under this key for a request we do not recognise: ask for it.
        return CallOutcome.UNKNOWN, None, code
    if status in _TRANSIENT_STATUSES or status >= 500 or status in (401, 403):
        # 401/403: our credentials are wrong; nothing was charged and a fixed
        # configuration makes the same call go through.
        return CallOutcome.TRANSIENT, None, code or f"http_{status}"
    if 400 <= status < 500:
        return CallOutcome.REFUSED, None, code or f"http_{status}"
    return CallOutcome.UNKNOWN, None, code or f"http_{status}"


def classify_lookup(status: int, body: Any) -> tuple[CallOutcome, ProviderCharge | None, str]:
    """Sort a ``GET /v1/charges?idempotency_key=`` answer."""
    if status == 200 and isinstance(body, dict) and isinstance(body.get("items"), list):
        items = body["items"]
        if not items:
            return CallOutcome.NOT_FOUND, None, ""
        try:
            charge = ProviderCharge.from_json(items[0])
        except (KeyError, TypeError, ValueError):
            return CallOutcome.UNKNOWN, None, "unreadable charge"
        outcome = CallOutcome.SUCCEEDED if charge.status == "succeeded" else CallOutcome.FAILED
        return outcome, charge, charge.failure_code or ""
    return CallOutcome.TRANSIENT, None, _problem_code(body) or f"http_{status}"


def classify_refund(status: int, body: Any) -> tuple[CallOutcome, str]:
    """Sort a ``POST /v1/charges/{id}/refunds`` answer (always a full refund)."""
    code = _problem_code(body)
    if status == 201:
        return CallOutcome.SUCCEEDED, ""
    if status == 409 and code == "charge_already_refunded":
        # Everything is back with the customer already: the outcome we wanted.
        return CallOutcome.SUCCEEDED, code
    if status in _TRANSIENT_STATUSES or status >= 500 or status in (401, 403):
        return CallOutcome.TRANSIENT, code or f"http_{status}"
    if 400 <= status < 500:
        return CallOutcome.REFUSED, code or f"http_{status}"
    return CallOutcome.UNKNOWN, code or f"http_{status}"


def _problem_code(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("code"), str):
        return str(body["code"])
    return ""


class ProviderClient:
    """``/v1`` of the provider with an API key; one instance per process."""

    def __init__(self, base_url: str, api_key: str, *, timeout_seconds: float) -> None:
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._timeout = timeout_seconds
        self._http: aiohttp.ClientSession | None = None

    def _session(self) -> aiohttp.ClientSession:
        # Made on first use, inside the running loop that its connections belong to.
        if self._http is None:
            self._http = aiohttp.ClientSession(
                headers=self._headers,
                # No timer of its own: the asyncio.timeout around each call is the deadline.
                timeout=aiohttp.ClientTimeout(),
                # Idle connections are dropped after 5 s (aiohttp keeps them 15 s), as
                # before, so that fewer requests go out on a connection the provider is
                # closing: a charge cut off that way is a charge not known.
                connector=aiohttp.TCPConnector(limit=100, keepalive_timeout=5.0),
            )
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """One request within the deadline, ``body`` sent as JSON: (status, the answer's
        body as JSON, or None)."""
        async with (
            asyncio.timeout(self._timeout),
            self._session().request(
                method,
                f"{self._base}{path}",
                json=body,
                params=params,
                headers=headers,
                # An answer is classified as it comes, redirects included.
                allow_redirects=False,
            ) as response,
        ):
            return response.status, _json(await response.read())

    async def tokenize(self, card: Card) -> CardToken:
        """A provider token for ``card``; Luhn-invalid or expired cards are refused (422)."""
        try:
            status, body = await self._request(
                "POST",
                "/v1/tokens",
                body={
                    "card_number": card.number,
                    "exp_month": card.exp_month,
                    "exp_year": card.exp_year,
                    "cvc": card.cvc,
                },
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            # Only the class: an exception's text must never risk carrying the card.
            raise ProviderUnavailable(
                f"The payment provider did not answer ({type(exc).__name__})"
            ) from None
        if status == 201 and isinstance(body, dict):
            try:
                return CardToken(
                    token=str(body["token"]),
                    brand=str(body["brand"]),
                    last4=str(body["last4"]),
                    exp_month=int(body["exp_month"]),
                    exp_year=int(body["exp_year"]),
                )
            except (KeyError, TypeError, ValueError):
                raise ProviderUnavailable("The payment provider's answer was unreadable") from None
        code = _problem_code(body)
        if code == "invalid_card_number":
            raise InvalidCardNumber()
        if code == "expired_card":
            raise CardExpired()
        raise ProviderUnavailable(
            f"The payment provider refused to tokenise the card ({code or status})"
        )

    async def charge(
        self,
        key: str,
        *,
        amount: int,
        currency: str,
        token: str,
        description: str,
        metadata: dict[str, str],
    ) -> ProviderAnswer:
        """One ``POST /v1/charges`` under ``key``. The body must be the same on every try."""
        payload = {
            "amount": amount,
            "currency": currency,
            "token": token,
            "description": description,
            "metadata": metadata,
        }
        started = time.perf_counter()
        try:
            status, body = await self._request(
                "POST", "/v1/charges", body=payload, headers={"Idempotency-Key": key}
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            return self._failed_call("charge", key, exc, started)
        outcome, charge, error = classify_charge(status, body)
        return self._answer("charge", key, outcome, started, status, error, charge)

    async def find_charge(self, key: str) -> ProviderAnswer:
        """The charge made under ``key``, if any; the provider waits for one in flight."""
        started = time.perf_counter()
        try:
            status, body = await self._request(
                "GET", "/v1/charges", params={"idempotency_key": key}
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            # Reading changes nothing: whatever happened, asking again is safe.
            answer = self._failed_call("lookup", key, exc, started)
            return dataclasses.replace(answer, outcome=CallOutcome.TRANSIENT)
        outcome, charge, error = classify_lookup(status, body)
        return self._answer("lookup", key, outcome, started, status, error, charge)

    async def refund(self, charge_id: str, key: str) -> ProviderAnswer:
        """Refund all that is left of ``charge_id`` under ``key`` (a repeat replays it)."""
        started = time.perf_counter()
        try:
            status, body = await self._request(
                "POST",
                f"/v1/charges/{charge_id}/refunds",
                body={},
                headers={"Idempotency-Key": key},
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            return self._failed_call("refund", key, exc, started)
        outcome, error = classify_refund(status, body)
        return self._answer("refund", key, outcome, started, status, error, None)

    def _failed_call(
        self, kind: str, key: str, exc: BaseException, started: float
    ) -> ProviderAnswer:
        outcome = CallOutcome.TRANSIENT if isinstance(exc, _NOT_SENT) else CallOutcome.UNKNOWN
        error = type(exc).__name__ if isinstance(exc, TimeoutError) else repr(exc)
        return self._answer(kind, key, outcome, started, None, error[:500], None)

    def _answer(
        self,
        kind: str,
        key: str,
        outcome: CallOutcome,
        started: float,
        status: int | None,
        error: str,
        charge: ProviderCharge | None,
    ) -> ProviderAnswer:
        elapsed = time.perf_counter() - started
        PROVIDER_CALLS.labels(kind, str(outcome)).observe(elapsed)
        return ProviderAnswer(
            kind=kind,
            idempotency_key=key,
            outcome=outcome,
            http_status=status,
            error=error or None,
            charge=charge,
            duration_ms=int(elapsed * 1000),
        )


def _json(content: bytes) -> Any:
    """The body as JSON, whatever its content type; None when it is not JSON."""
    try:
        return orjson.loads(content)
    except ValueError:
        return None
