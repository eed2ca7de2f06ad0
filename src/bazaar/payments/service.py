"""The payments rules: methods, payments and their state machine, and what each change announces.

Functions take the caller's session and never commit: the edge does (a request, the
command consumer, or the processor between provider calls), so a state change, its
ledger entry and the outbox row announcing it land in one transaction.

The state machine (API.md): ``pending`` (recorded, the provider not yet asked) →
``processing`` (asked; the answer may be unknown) → ``succeeded`` | ``failed``;
``succeeded`` → ``refunded``. A cancel voids a payment not yet charged (``failed``
with ``failure_code="cancelled"``) and refunds one that succeeded.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.contracts.payments import (
    ChargePayment,
    PaymentCancelled,
    PaymentFailed,
    PaymentOutcome,
    PaymentProcessing,
    PaymentRefunded,
    PaymentSucceeded,
)
from bazaar.kit.errors import Forbidden
from bazaar.kit.logging import get_logger
from bazaar.kit.messaging.outbox import publish_message
from bazaar.kit.pagination import PageParams, cursor_part, decode_cursor, encode_cursor
from bazaar.kit.tokens import Principal
from bazaar.payments import ledger, repository
from bazaar.payments.errors import (
    CardExpired,
    InvalidCardNumber,
    PaymentMethodInvalid,
    PaymentMethodNotFound,
    PaymentNotFound,
)
from bazaar.payments.models import (
    EarlyCancellation,
    EntryKind,
    FailureCode,
    Payment,
    PaymentMethod,
    PaymentStatus,
)
from bazaar.payments.provider import Card, CardToken, ProviderCharge, ProviderClient
from bazaar.payments.schemas import (
    MAX_AMOUNT,
    PaymentCreate,
    PaymentMethodCreate,
    PaymentMethodDetail,
    PaymentMethodPage,
    PaymentMethodRead,
    PaymentPage,
    PaymentRead,
)

log = get_logger(__name__)

SOURCE = "bazaar/payments"
# Who may see any method or payment (the owner always sees their own).
STAFF_ROLES = frozenset({"support", "admin"})
READ_ANY_ROLES = STAFF_ROLES | {"service"}
FINAL_STATUSES = frozenset({PaymentStatus.SUCCEEDED, PaymentStatus.FAILED, PaymentStatus.REFUNDED})

PAYMENT_OUTCOMES = Counter(
    "bazaar_payments_total",
    "Payment outcomes recorded: succeeded, failed, processing (unknown), refunded, cancelled",
    ["outcome"],
)


def utc_now() -> datetime:
    return datetime.now(UTC)


def caller_user_id(principal: Principal) -> uuid.UUID | None:
    """The caller's user id; None for a caller that is not a user (a service client)."""
    try:
        return uuid.UUID(principal.subject)
    except ValueError:
        return None


# --- cards and payment methods ---------------------------------------------------------


def luhn_valid(number: str) -> bool:
    """The Luhn (mod 10) check every card number passes."""
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


def card_expired(exp_month: int, exp_year: int, today: date) -> bool:
    """A card is good through the last day of its expiry month."""
    return (exp_year, exp_month) < (today.year, today.month)


def card_fingerprint(data: PaymentMethodCreate, key: bytes) -> dict[str, Any]:
    """What an Idempotency-Key record keeps of a card: a keyed hash, never the number.

    An unkeyed hash of a 16-digit number with a check digit and known prefixes can be
    reversed by trying them all; without ``key`` it cannot.
    """
    material = "|".join(
        (
            data.card_number.get_secret_value(),
            str(data.exp_month),
            str(data.exp_year),
            data.cvc.get_secret_value(),
        )
    )
    return {"card": hmac.new(key, material.encode(), hashlib.sha256).hexdigest()}


async def tokenize_card(
    owner: Principal, data: PaymentMethodCreate, provider: ProviderClient, today: date | None = None
) -> CardToken:
    """The provider's token for the caller's card, after the checks that need no provider.

    Called before the request touches the database, so no transaction is open while
    the provider answers; a repeated request costs at most an unused token.
    """
    if caller_user_id(owner) is None:
        raise Forbidden("Only users keep payment methods")
    card = Card(
        number=data.card_number.get_secret_value(),
        exp_month=data.exp_month,
        exp_year=data.exp_year,
        cvc=data.cvc.get_secret_value(),
    )
    if not luhn_valid(card.number):
        raise InvalidCardNumber()
    if card_expired(card.exp_month, card.exp_year, today or utc_now().date()):
        raise CardExpired()
    return await provider.tokenize(card)


async def add_method(
    session: AsyncSession, owner: Principal, token: CardToken
) -> PaymentMethodRead:
    """Keep the provider's token with what identifies the card to a person."""
    user_id = caller_user_id(owner)
    if user_id is None:
        raise Forbidden("Only users keep payment methods")
    method = await repository.add_method(
        session,
        PaymentMethod(
            id=uuid.uuid4(),
            user_id=user_id,
            provider_token=token.token,
            brand=token.brand,
            last4=token.last4,
            exp_month=token.exp_month,
            exp_year=token.exp_year,
        ),
    )
    log.info("payment_method_added", method_id=str(method.id), brand=method.brand)
    return PaymentMethodRead.model_validate(method, from_attributes=True)


async def list_methods(
    session: AsyncSession, owner: Principal, page: PageParams
) -> PaymentMethodPage:
    user_id = caller_user_id(owner)
    if user_id is None:
        return PaymentMethodPage(items=[], next_cursor=None)
    after = _time_cursor(page.cursor)
    found = await repository.list_methods(session, user_id, limit=page.limit + 1, after=after)
    items = found[: page.limit]
    more = len(found) > page.limit
    return PaymentMethodPage(
        items=[PaymentMethodRead.model_validate(method, from_attributes=True) for method in items],
        next_cursor=encode_cursor(items[-1].created_at.isoformat(), str(items[-1].id))
        if more
        else None,
    )


async def get_method(
    session: AsyncSession, caller: Principal, method_id: uuid.UUID
) -> PaymentMethodDetail:
    """The owner's method, or any method for services, support and admins; deleted: 404."""
    method = await repository.get_method(session, method_id)
    if method is None or method.deleted_at is not None or not _may_see(caller, method.user_id):
        raise PaymentMethodNotFound()
    return PaymentMethodDetail.model_validate(method, from_attributes=True)


async def delete_method(session: AsyncSession, owner: Principal, method_id: uuid.UUID) -> None:
    """Soft delete: payments made with it keep their history; it can no longer be charged."""
    method = await repository.get_method(session, method_id, for_update=True)
    if method is None or method.deleted_at is not None or method.user_id != caller_user_id(owner):
        raise PaymentMethodNotFound()
    method.deleted_at = utc_now()
    log.info("payment_method_deleted", method_id=str(method.id))


def _may_see(caller: Principal, owner_id: uuid.UUID) -> bool:
    return caller.has_any(READ_ANY_ROLES) or caller_user_id(caller) == owner_id


async def usable_method(
    session: AsyncSession, method_id: uuid.UUID, user_id: uuid.UUID | None = None
) -> PaymentMethod | None:
    """The method if it can be charged (exists, not deleted, and ``user_id``'s if given)."""
    method = await repository.get_method(session, method_id)
    if method is None or method.deleted_at is not None:
        return None
    if user_id is not None and method.user_id != user_id:
        return None
    return method


# --- reading payments ----------------------------------------------------------------


def payment_view(payment: Payment) -> PaymentRead:
    return PaymentRead.model_validate(payment, from_attributes=True)


async def get_payment(
    session: AsyncSession, caller: Principal, payment_id: uuid.UUID
) -> PaymentRead:
    payment = await repository.get_payment(session, payment_id)
    if payment is None or not _may_see(caller, payment.user_id):
        raise PaymentNotFound()
    return payment_view(payment)


async def list_payments(
    session: AsyncSession,
    caller: Principal,
    page: PageParams,
    *,
    user_id: uuid.UUID | None,
    reference_type: str | None,
    reference_id: uuid.UUID | None,
    status: str | None,
) -> PaymentPage:
    """Customers see their own; services, support and admins all, or one user's."""
    if not caller.has_any(READ_ANY_ROLES):
        own = caller_user_id(caller)
        if own is None or (user_id is not None and user_id != own):
            raise Forbidden("Only support and admins list other users' payments")
        user_id = own
    found = await repository.list_payments(
        session,
        limit=page.limit + 1,
        user_id=user_id,
        reference_type=reference_type,
        reference_id=reference_id,
        status=status,
        after=_time_cursor(page.cursor),
    )
    items = found[: page.limit]
    more = len(found) > page.limit
    return PaymentPage(
        items=[payment_view(payment) for payment in items],
        next_cursor=encode_cursor(items[-1].created_at.isoformat(), str(items[-1].id))
        if more
        else None,
    )


def _time_cursor(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    if not cursor:
        return None
    created_at, last_id = decode_cursor(cursor, 2)
    return cursor_part(datetime.fromisoformat, created_at), cursor_part(uuid.UUID, last_id)


# --- opening payments ------------------------------------------------------------------


async def open_payment(
    session: AsyncSession, payment_id: uuid.UUID, data: PaymentCreate, correlation_id: str | None
) -> None:
    """Record a payment asked for over HTTP, ``pending`` and due at once.

    The payer is the method's owner; a method that cannot be charged is a 422.
    """
    method = await usable_method(session, data.payment_method_id)
    if method is None:
        raise PaymentMethodInvalid()
    payment = Payment(
        id=payment_id,
        user_id=method.user_id,
        amount=data.amount,
        currency=data.currency,
        status=PaymentStatus.PENDING,
        reference_type=data.reference_type,
        reference_id=data.reference_id,
        payment_method_id=method.id,
        correlation_id=correlation_id or str(data.reference_id),
        next_check_at=utc_now(),
    )
    await repository.insert_payment(session, payment)
    log.info("payment_opened", payment_id=str(payment_id), amount=data.amount)


@dataclass(frozen=True, slots=True)
class ChargeClaim:
    """A processor's offer to send a new payment's first charge itself, as soon as the
    transaction recording the payment commits: the payment is then recorded already
    claimed by ``token`` for ``lease`` and ``processing`` (see :func:`request_charge`)."""

    token: uuid.UUID
    lease: timedelta


@dataclass(frozen=True, slots=True)
class FirstCharge:
    """A payment recorded claimed and ``processing``, and its method's provider token:
    the charge its claimant sends after the commit."""

    payment: Payment
    provider_token: str


async def request_charge(
    session: AsyncSession,
    command: ChargePayment,
    correlation_id: str | None,
    *,
    claim: ChargeClaim | None = None,
) -> FirstCharge | None:
    """ChargePayment: record the payment once per ``payment_id`` and let the processor charge.

    A repeat (a redelivery, a saga's retry) finds the payment: a final one has its
    outcome published again, for a saga that missed it; one in progress is made due
    now, so the provider is asked without waiting for the next scheduled check.

    The first delivery is the common case, so an acceptable command is first tried as
    a new payment (inserted unless one exists, waking the processors at commit) and
    only a command that finds its payment recorded is answered as a repeat.

    With ``claim``, a new payment that can be charged (its method is the payer's, no
    cancel came first) is recorded claimed and ``processing`` with its first attempt
    counted, as the processor's claim would have marked it, and returned: the claimant
    sends the charge once this transaction commits, without a claim transaction of its
    own. Committed ``processing`` before the charge leaves, as always: should the
    claimant never send it (a crash), the claim expires and the reconciler asks the
    provider under the payment's key before it charges. Anything else (a repeat, a
    method that cannot be charged, an early cancel) takes the general path.
    """
    if _acceptable(command):
        if claim is not None:
            first = await _record_first_charge(session, command, correlation_id, claim)
            if first is not None:
                return first
        if await repository.insert_payment(
            session, _new_payment(command, correlation_id), notify_due=True
        ):
            await _check_new_charge(session, command)
            return None
    payment = await repository.get_payment(session, command.payment_id, for_update=True)
    if payment is not None:
        if _differs(payment, command):
            log.warning("charge_command_differs_from_payment", payment_id=str(payment.id))
        if payment.status in FINAL_STATUSES:
            await _republish_outcome(session, payment)
        else:
            # The saga is waiting: ask the provider now rather than at the next check.
            payment.next_check_at = utc_now()
            await repository.notify_due(session)
        return None
    # Only a command the provider would never take gets here (an acceptable one was
    # recorded above, or found recorded): answer without a payment record.
    await _publish(
        session,
        PaymentFailed,
        _outcome_fields(command),
        correlation_id=correlation_id,
        user_id=command.user_id,
        payment_id=command.payment_id,
        failure_code=FailureCode.INVALID_REQUEST,
    )
    PAYMENT_OUTCOMES.labels("failed").inc()
    return None


def _new_payment(command: ChargePayment, correlation_id: str | None) -> Payment:
    """The payment a ChargePayment asks for, ``pending`` and due at once."""
    return Payment(
        id=command.payment_id,
        user_id=command.user_id,
        amount=command.amount,
        currency=command.currency,
        status=PaymentStatus.PENDING,
        reference_type=command.reference_type,
        reference_id=command.reference_id,
        payment_method_id=command.payment_method_id,
        correlation_id=correlation_id or str(command.reference_id),
        next_check_at=utc_now(),
    )


async def _record_first_charge(
    session: AsyncSession, command: ChargePayment, correlation_id: str | None, claim: ChargeClaim
) -> FirstCharge | None:
    """The payment recorded claimed and ``processing`` if it is new and can be charged."""
    payment = _new_payment(command, correlation_id)
    payment.status = PaymentStatus.PROCESSING
    payment.attempts = 1
    payment.claim_token = claim.token
    payment.cancel_requested = False
    # Still due: if the claim runs out unreleased, the reconciler takes the payment.
    provider_token = await repository.insert_claimed_payment(session, payment, lease=claim.lease)
    if provider_token is None:
        return None
    log.info("payment_requested", payment_id=str(command.payment_id), amount=command.amount)
    return FirstCharge(payment, provider_token)


async def _check_new_charge(session: AsyncSession, command: ChargePayment) -> None:
    """A payment just recorded: void it if its cancel came first or its method cannot be
    charged; otherwise it waits, due, for a processor."""
    early = await repository.get_early_cancellation(session, command.payment_id)
    usable = early is None and (
        await usable_method(session, command.payment_method_id, command.user_id) is not None
    )
    if not usable:
        payment = await repository.get_payment(session, command.payment_id, for_update=True)
        assert payment is not None
        if early is not None:
            payment.cancel_requested = True
            payment.cancel_reason = early.reason
            payment.cancel_correlation_id = early.correlation_id
            await void_payment(session, payment, FailureCode.CANCELLED)
        else:
            await void_payment(session, payment, FailureCode.PAYMENT_METHOD_INVALID)
        return
    log.info("payment_requested", payment_id=str(command.payment_id), amount=command.amount)


def _acceptable(command: ChargePayment) -> bool:
    return (
        0 < command.amount <= MAX_AMOUNT
        and len(command.currency) == 3
        and command.currency.isascii()
        and command.currency.isalpha()
        and command.currency.isupper()
    )


def _differs(payment: Payment, command: ChargePayment) -> bool:
    return (
        payment.amount,
        payment.currency,
        payment.user_id,
        payment.payment_method_id,
        payment.reference_id,
    ) != (
        command.amount,
        command.currency,
        command.user_id,
        command.payment_method_id,
        command.reference_id,
    )


# --- cancelling ------------------------------------------------------------------------


async def request_cancel(
    session: AsyncSession, payment_id: uuid.UUID, reason: str, correlation_id: str | None
) -> Payment | None:
    """CancelPayment (or the HTTP cancel): void what is not charged, refund what succeeded.

    * unknown payment: remembered, so that its ChargePayment, if it comes, never charges;
    * ``pending`` (the provider never asked): voided now → PaymentFailed(cancelled),
      PaymentCancelled;
    * ``processing``: the provider's answer is awaited first; a charge that turns out
      to have succeeded is refunded, one that was never made is voided;
    * ``succeeded``: refunded in full by the processor → PaymentRefunded;
    * ``failed``: nothing to give back → PaymentCancelled (again on every cancel);
    * ``refunded``: PaymentRefunded again.
    """
    payment = await repository.get_payment(session, payment_id, for_update=True)
    if payment is None:
        await repository.add_early_cancellation(
            session,
            EarlyCancellation(
                payment_id=payment_id, reason=reason[:200], correlation_id=correlation_id
            ),
        )
        log.warning("cancel_before_charge", payment_id=str(payment_id))
        return None
    first_request = not payment.cancel_requested
    if first_request:
        payment.cancel_requested = True
        payment.cancel_reason = reason[:200]
        payment.cancel_correlation_id = correlation_id
    status = PaymentStatus(payment.status)
    if status is PaymentStatus.PENDING:
        await void_payment(session, payment, FailureCode.CANCELLED)
    elif status in (PaymentStatus.PROCESSING, PaymentStatus.SUCCEEDED):
        if first_request:
            payment.next_check_at = utc_now()
            payment.updated_at = utc_now()
            await repository.notify_due(session)
    elif status is PaymentStatus.FAILED:
        await _announce(session, payment, PaymentCancelled, cancel=True)
        if first_request:
            PAYMENT_OUTCOMES.labels("cancelled").inc()
    else:
        await _announce(
            session,
            payment,
            PaymentRefunded,
            cancel=True,
            refunded_amount=payment.refunded_amount,
        )
    log.info("payment_cancel_requested", payment_id=str(payment.id), status=payment.status)
    return payment


# --- outcomes (recorded by the processor, each in its own transaction) ------------------


async def record_charge(session: AsyncSession, payment: Payment, charge: ProviderCharge) -> None:
    """The provider's charge under the payment's key: the payment's outcome.

    Idempotent: a payment already final keeps its outcome. A succeeded charge of a
    payment whose cancel was asked for meanwhile is made due at once, to be refunded.
    """
    now = utc_now()
    if payment.status not in (PaymentStatus.PENDING, PaymentStatus.PROCESSING):
        if (
            payment.status == PaymentStatus.FAILED
            and payment.provider_charge_id is None
            and charge.status == "succeeded"
        ):
            # Money taken for a payment already answered as failed (a call that reached
            # the provider after the payment was given up): it goes straight back.
            log.error("charge_found_for_failed_payment", payment_id=str(payment.id))
            payment.status = PaymentStatus.SUCCEEDED
            payment.provider_charge_id = charge.id
            payment.cancel_requested = True
            payment.cancel_reason = payment.cancel_reason or "charged_after_failure"
            payment.next_check_at = now
            payment.updated_at = now
            await ledger.post(
                session, payment, EntryKind.CHARGE, ledger.charge_lines(payment.amount)
            )
            await repository.notify_due(session)
        return
    payment.provider_charge_id = charge.id
    payment.updated_at = now
    payment.rounds = 0
    if charge.status == "succeeded":
        payment.status = PaymentStatus.SUCCEEDED
        payment.failure_code = None
        if payment.cancel_requested:
            payment.next_check_at = now
            await repository.notify_due(session)
        else:
            payment.next_check_at = None
    else:
        payment.status = PaymentStatus.FAILED
        payment.failure_code = failure_code_of(charge.failure_code)
        payment.next_check_at = None
    await _charge_answered(session, payment)


async def record_claimed_charge(
    session: AsyncSession, payment_id: uuid.UUID, claim_token: uuid.UUID, charge: ProviderCharge
) -> bool:
    """:func:`record_charge` for its common case, the payment still claimed by
    ``claim_token``, waiting for this answer, no cancel asked for: the outcome and the
    claim's release in one ``UPDATE ... RETURNING``, then its ledger entry and events.

    True when recorded. False when the payment is in any other state: nothing was
    changed, and the caller records the charge on the locked payment instead.
    """
    succeeded = charge.status == "succeeded"
    payment = await repository.settle_claimed_charge(
        session,
        payment_id,
        claim_token,
        status=PaymentStatus.SUCCEEDED if succeeded else PaymentStatus.FAILED,
        failure_code=None if succeeded else failure_code_of(charge.failure_code),
        provider_charge_id=charge.id,
        now=utc_now(),
    )
    if payment is None:
        return False
    await _charge_answered(session, payment)
    return True


async def _charge_answered(session: AsyncSession, payment: Payment) -> None:
    """The ledger entry and the events of a charge's final answer, just recorded."""
    if payment.status == PaymentStatus.SUCCEEDED:
        await ledger.post(session, payment, EntryKind.CHARGE, ledger.charge_lines(payment.amount))
        await _announce(session, payment, PaymentSucceeded)
        PAYMENT_OUTCOMES.labels("succeeded").inc()
        log.info(
            "payment_succeeded", payment_id=str(payment.id), charge_id=payment.provider_charge_id
        )
        return
    await _announce(session, payment, PaymentFailed, failure_code=payment.failure_code)
    PAYMENT_OUTCOMES.labels("failed").inc()
    if payment.cancel_requested:
        await _announce(session, payment, PaymentCancelled, cancel=True)
        PAYMENT_OUTCOMES.labels("cancelled").inc()
    log.info("payment_failed", payment_id=str(payment.id), failure_code=payment.failure_code)


def failure_code_of(provider_code: str | None) -> FailureCode:
    """The platform's failure code for a provider's decline code."""
    try:
        code = FailureCode(provider_code or "")
    except ValueError:
        return FailureCode.CARD_DECLINED
    if code in (FailureCode.CANCELLED, FailureCode.INVALID_REQUEST):
        return FailureCode.CARD_DECLINED
    return code


async def void_payment(session: AsyncSession, payment: Payment, code: FailureCode) -> None:
    """No charge was made and none will be: ``failed`` with ``code``.

    PaymentFailed answers the charge; when a cancel was asked for, PaymentCancelled
    answers the cancel too.
    """
    if payment.status in FINAL_STATUSES:
        return
    payment.status = PaymentStatus.FAILED
    payment.failure_code = code
    payment.next_check_at = None
    payment.updated_at = utc_now()
    await _announce(session, payment, PaymentFailed, failure_code=code)
    PAYMENT_OUTCOMES.labels("failed").inc()
    if payment.cancel_requested:
        await _announce(session, payment, PaymentCancelled, cancel=True)
        PAYMENT_OUTCOMES.labels("cancelled").inc()
    log.info("payment_voided", payment_id=str(payment.id), failure_code=code)


async def record_unknown(session: AsyncSession, payment: Payment) -> None:
    """The provider was asked and its answer is not known yet: say so, once."""
    if payment.status != PaymentStatus.PROCESSING or payment.processing_announced:
        return
    payment.processing_announced = True
    payment.updated_at = utc_now()
    await _announce(session, payment, PaymentProcessing)
    PAYMENT_OUTCOMES.labels("processing").inc()
    log.warning("payment_outcome_unknown", payment_id=str(payment.id))


async def record_refund(session: AsyncSession, payment: Payment) -> None:
    """The provider refunded the charge in full: ``refunded``, ledger reversed."""
    if payment.status != PaymentStatus.SUCCEEDED:
        return
    amount = payment.amount - payment.refunded_amount
    payment.status = PaymentStatus.REFUNDED
    payment.refunded_amount = payment.amount
    payment.next_check_at = None
    payment.updated_at = utc_now()
    await ledger.post(session, payment, EntryKind.REFUND, ledger.refund_lines(amount))
    await _announce(
        session, payment, PaymentRefunded, cancel=True, refunded_amount=payment.refunded_amount
    )
    PAYMENT_OUTCOMES.labels("refunded").inc()
    log.info("payment_refunded", payment_id=str(payment.id), amount=amount)


def recheck_delay(rounds: int, first: float, longest: float) -> timedelta:
    """Doubling waits between checks of a payment the provider has not settled yet."""
    return timedelta(seconds=min(longest, first * 2 ** max(0, min(rounds, 20))))


# --- events ----------------------------------------------------------------------------


async def _republish_outcome(session: AsyncSession, payment: Payment) -> None:
    if payment.status == PaymentStatus.FAILED:
        await _announce(session, payment, PaymentFailed, failure_code=payment.failure_code)
        return
    await _announce(session, payment, PaymentSucceeded)
    if payment.status == PaymentStatus.REFUNDED:
        await _announce(session, payment, PaymentRefunded, refunded_amount=payment.refunded_amount)


async def _announce(
    session: AsyncSession,
    payment: Payment,
    event: type[PaymentOutcome],
    *,
    cancel: bool = False,
    **extra: Any,
) -> None:
    """Publish ``event`` about ``payment``: with the cancel's correlation id for a cancel's
    outcome, else the charge's."""
    correlation_id = payment.correlation_id
    if cancel and payment.cancel_correlation_id:
        correlation_id = payment.cancel_correlation_id
    await _publish(
        session,
        event,
        {
            "amount": payment.amount,
            "currency": payment.currency,
            "reference_type": payment.reference_type,
            "reference_id": payment.reference_id,
        },
        correlation_id=correlation_id,
        user_id=payment.user_id,
        payment_id=payment.id,
        **extra,
    )


def _outcome_fields(command: ChargePayment) -> dict[str, Any]:
    return {
        "amount": command.amount,
        "currency": command.currency,
        "reference_type": command.reference_type,
        "reference_id": command.reference_id,
    }


async def _publish(
    session: AsyncSession,
    event: type[PaymentOutcome],
    fields: dict[str, Any],
    *,
    correlation_id: str | None,
    user_id: uuid.UUID,
    payment_id: uuid.UUID,
    **extra: Any,
) -> None:
    message = event(
        payment_id=payment_id, user_id=user_id, occurred_at=utc_now(), **fields, **extra
    )
    await publish_message(
        session,
        message,
        source=SOURCE,
        key=str(payment_id),
        correlation_id=correlation_id,
        user_id=user_id,
    )
