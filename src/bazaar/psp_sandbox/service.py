"""The card behaviours: tokens, charges and refunds, as a real provider would answer them.

The test cards (API.md, "The payment provider sandbox"):

==================  ==========================================================
4242 4242 4242 4242 approves
4000 0000 0000 0002 declines: ``card_declined``
4000 0000 0000 9995 declines: ``insufficient_funds``
4000 0000 0000 0119 the first attempt of each idempotency key fails (500, no
                    charge); the next attempt with that key approves
4000 0000 0000 0259 approves at once, but the answer is held back
                    (``slow_card_delay_seconds``), so the caller must ask
==================  ==========================================================

Any other Luhn-valid number approves. A token remembers the card's behaviour class,
never its number. Every charge and refund runs under a lock per idempotency key (per
charge for refunds), so concurrent repeats of one request make one charge.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Literal

from bazaar.kit.errors import IdempotencyKeyReused
from bazaar.kit.idempotency import request_fingerprint as fingerprint_of
from bazaar.kit.logging import get_logger
from bazaar.psp_sandbox.errors import (
    CardExpired,
    ChargeAlreadyRefunded,
    ChargeNotFound,
    ChargeNotRefundable,
    InvalidCardNumber,
    ProcessingError,
    RefundExceedsCharge,
    TokenNotFound,
)
from bazaar.psp_sandbox.ledger import (
    CardBehaviour,
    ChargeMade,
    ChargeState,
    FirstAttemptFailed,
    Ledger,
    RefundMade,
    TokenIssued,
)

log = get_logger(__name__)

TEST_CARDS: dict[str, CardBehaviour] = {
    "4242424242424242": CardBehaviour.APPROVE,
    "4000000000000002": CardBehaviour.DECLINE,
    "4000000000009995": CardBehaviour.INSUFFICIENT_FUNDS,
    "4000000000000119": CardBehaviour.FAIL_FIRST_ATTEMPT,
    "4000000000000259": CardBehaviour.ANSWER_LATE,
}

# behaviour -> (failure_code, failure_message) of the failed charge it makes
DECLINES: dict[CardBehaviour, tuple[str, str]] = {
    CardBehaviour.DECLINE: ("card_declined", "The card was declined"),
    CardBehaviour.INSUFFICIENT_FUNDS: ("insufficient_funds", "The card has insufficient funds"),
}
EXPIRED = ("expired_card", "The card has expired")

ChargeStatus = Literal["succeeded", "failed"]


def luhn_valid(number: str) -> bool:
    """The Luhn (mod 10) check digit test every card number passes."""
    if not number.isdigit():
        return False
    total = 0
    for position, digit in enumerate(int(char) for char in reversed(number)):
        if position % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def card_brand(number: str) -> str:
    """The card network, from the number's leading digits (IIN ranges)."""
    if number.startswith("4"):
        return "visa"
    if 51 <= int(number[:2]) <= 55 or 2221 <= int(number[:4]) <= 2720:
        return "mastercard"
    if number[:2] in ("34", "37"):
        return "amex"
    if number.startswith(("6011", "65")) or 644 <= int(number[:3]) <= 649:
        return "discover"
    return "unknown"


def card_behaviour(number: str) -> CardBehaviour:
    return TEST_CARDS.get(number, CardBehaviour.APPROVE)


def card_expired(exp_month: int, exp_year: int, today: date) -> bool:
    """A card is good through the last day of its expiry month."""
    return (exp_year, exp_month) < (today.year, today.month)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class CardDetails:
    """A card as the caller sent it; lives for one request and is never stored."""

    number: str = field(repr=False)
    exp_month: int
    exp_year: int


@dataclass(frozen=True)
class ChargeRequest:
    amount: int
    currency: str
    token: str
    description: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    def fingerprint(self) -> str:
        return fingerprint_of(
            {
                "amount": self.amount,
                "currency": self.currency,
                "token": self.token,
                "description": self.description,
                "metadata": self.metadata,
            }
        )


@dataclass(frozen=True)
class ChargeOutcome:
    state: ChargeState
    replayed: bool
    # Seconds the HTTP answer is held back (the "answers late" card), 0 for the others.
    answer_delay: float


@dataclass(frozen=True)
class RefundOutcome:
    refund: RefundMade
    replayed: bool


class KeyedLocks:
    """An asyncio lock per key, forgotten when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


class PspSandbox:
    """The provider: issues tokens, makes charges and refunds, answers what it did."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        answer_late_delay: float,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.ledger = ledger
        self.answer_late_delay = answer_late_delay
        self.clock = clock
        self.locks = KeyedLocks()

    # --- tokens ----------------------------------------------------------------------

    async def issue_token(self, card: CardDetails) -> TokenIssued:
        """A token for a valid, unexpired card: its behaviour class, brand and last four."""
        if not luhn_valid(card.number):
            raise InvalidCardNumber()
        if card_expired(card.exp_month, card.exp_year, self.clock().date()):
            raise CardExpired()
        token = TokenIssued(
            token=f"tok_{uuid.uuid4().hex}",
            behaviour=card_behaviour(card.number),
            brand=card_brand(card.number),
            last4=card.number[-4:],
            exp_month=card.exp_month,
            exp_year=card.exp_year,
            created_at=self.clock(),
        )
        await self.ledger.append(token)
        log.info("token_issued", brand=token.brand, last4=token.last4)
        return token

    # --- charges ---------------------------------------------------------------------

    async def charge(self, idempotency_key: str, request: ChargeRequest) -> ChargeOutcome:
        """Charge a token once per idempotency key; a repeat of the same request replays it.

        Raises :class:`ProcessingError` (no charge made) for the first attempt of a key
        on the "fails first" card, and ``IdempotencyKeyReused`` when the key was used
        with a different request. Shielded, so that a cancelled caller cannot release
        the key's lock between the decision and its record.
        """
        return await asyncio.shield(self._charge(idempotency_key, request))

    async def _charge(self, idempotency_key: str, request: ChargeRequest) -> ChargeOutcome:
        request_fingerprint = request.fingerprint()
        async with self.locks.hold(_charge_lock(idempotency_key)):
            existing = self.ledger.charges_by_key.get(idempotency_key)
            if existing is not None:
                if existing.charge.fingerprint != request_fingerprint:
                    raise IdempotencyKeyReused()
                return ChargeOutcome(
                    existing, replayed=True, answer_delay=self._delay(existing.charge.behaviour)
                )
            failed_before = self.ledger.first_attempts.get(idempotency_key)
            if failed_before is not None and failed_before.fingerprint != request_fingerprint:
                raise IdempotencyKeyReused()
            token = self.ledger.tokens.get(request.token)
            if token is None:
                raise TokenNotFound()
            if token.behaviour is CardBehaviour.FAIL_FIRST_ATTEMPT and failed_before is None:
                await self.ledger.append(
                    FirstAttemptFailed(
                        idempotency_key=idempotency_key,
                        fingerprint=request_fingerprint,
                        created_at=self.clock(),
                    )
                )
                log.info("charge_first_attempt_failed", idempotency_key=idempotency_key)
                raise ProcessingError(
                    "No charge was made; retry with the same Idempotency-Key",
                    idempotency_key=idempotency_key,
                )
            status, failure_code, failure_message = self._decide(token)
            charge = ChargeMade(
                id=f"ch_{uuid.uuid4().hex}",
                idempotency_key=idempotency_key,
                fingerprint=request_fingerprint,
                token=token.token,
                behaviour=token.behaviour,
                amount=request.amount,
                currency=request.currency,
                status=status,
                failure_code=failure_code,
                failure_message=failure_message,
                description=request.description,
                metadata=request.metadata,
                brand=token.brand,
                last4=token.last4,
                created_at=self.clock(),
            )
            await self.ledger.append(charge)
            log.info(
                "charge_made",
                charge_id=charge.id,
                idempotency_key=idempotency_key,
                amount=charge.amount,
                currency=charge.currency,
                status=charge.status,
                failure_code=charge.failure_code,
                behaviour=str(charge.behaviour),
            )
            return ChargeOutcome(
                self.ledger.charges[charge.id],
                replayed=False,
                answer_delay=self._delay(charge.behaviour),
            )

    def _decide(self, token: TokenIssued) -> tuple[ChargeStatus, str | None, str | None]:
        if card_expired(token.exp_month, token.exp_year, self.clock().date()):
            return ("failed", *EXPIRED)
        if token.behaviour in DECLINES:
            return ("failed", *DECLINES[token.behaviour])
        return ("succeeded", None, None)

    def _delay(self, behaviour: CardBehaviour) -> float:
        return self.answer_late_delay if behaviour is CardBehaviour.ANSWER_LATE else 0.0

    def get_charge(self, charge_id: str) -> ChargeState:
        state = self.ledger.charges.get(charge_id)
        if state is None:
            raise ChargeNotFound(f"No charge {charge_id}")
        return state

    async def find_charge(self, idempotency_key: str) -> ChargeState | None:
        """The charge made under ``idempotency_key``, if any: how a lost answer is found.

        Waits for a request with that key still being decided, so that "no charge" is
        never answered while one is being made.
        """
        async with self.locks.hold(_charge_lock(idempotency_key)):
            return self.ledger.charges_by_key.get(idempotency_key)

    async def list_charges(
        self, *, idempotency_key: str | None = None, status: ChargeStatus | None = None
    ) -> list[ChargeState]:
        """Every charge made, oldest first, optionally only one key's or one status'."""
        if idempotency_key is not None:
            found = await self.find_charge(idempotency_key)
            candidates = [found] if found is not None else []
        else:
            candidates = list(self.ledger.charges.values())
        return [state for state in candidates if status is None or state.charge.status == status]

    # --- refunds ---------------------------------------------------------------------

    async def refund(
        self, charge_id: str, idempotency_key: str, amount: int | None
    ) -> RefundOutcome:
        """Refund ``amount`` (all that is left when None) of a succeeded charge, once per key.

        Keys are scoped to the charge; refunds of one charge are decided one at a time,
        so concurrent refunds never add up to more than was charged.
        """
        return await asyncio.shield(self._refund(charge_id, idempotency_key, amount))

    async def _refund(
        self, charge_id: str, idempotency_key: str, amount: int | None
    ) -> RefundOutcome:
        request_fingerprint = fingerprint_of({"charge_id": charge_id, "amount": amount})
        async with self.locks.hold(_refund_lock(charge_id)):
            state = self.get_charge(charge_id)
            existing = self.ledger.refunds_by_key.get((charge_id, idempotency_key))
            if existing is not None:
                if existing.fingerprint != request_fingerprint:
                    raise IdempotencyKeyReused()
                return RefundOutcome(existing, replayed=True)
            if state.charge.status != "succeeded":
                raise ChargeNotRefundable(f"Charge {charge_id} {state.charge.status}")
            refundable = state.refundable_amount
            if refundable == 0:
                raise ChargeAlreadyRefunded(f"Charge {charge_id} has been refunded in full")
            refund_amount = refundable if amount is None else amount
            if refund_amount > refundable:
                raise RefundExceedsCharge(refundable)
            refund = RefundMade(
                id=f"re_{uuid.uuid4().hex}",
                charge_id=charge_id,
                idempotency_key=idempotency_key,
                fingerprint=request_fingerprint,
                amount=refund_amount,
                currency=state.charge.currency,
                created_at=self.clock(),
            )
            await self.ledger.append(refund)
            log.info(
                "refund_made",
                refund_id=refund.id,
                charge_id=charge_id,
                amount=refund.amount,
                refunded_amount=state.refunded_amount,
            )
            return RefundOutcome(refund, replayed=False)

    def list_refunds(self, charge_id: str) -> list[RefundMade]:
        return list(self.get_charge(charge_id).refunds)


def _charge_lock(idempotency_key: str) -> str:
    return f"charge:{idempotency_key}"


def _refund_lock(charge_id: str) -> str:
    return f"refund:{charge_id}"
