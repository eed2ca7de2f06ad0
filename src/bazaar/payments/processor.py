"""The payment processor: the one place that talks to the provider about payments.

Work is done in rounds on one claimed payment, and no database transaction is open
while the provider is called:

1. claim (a short transaction, ``FOR UPDATE SKIP LOCKED``): the payment is reserved
   for this replica until its lease ends, then commit;
2. record that the charge is being sent (``processing``), commit;
3. call the provider with the payment's idempotency key (``pay-<id>``, or
   ``refund-<id>``), retrying transient failures with the same key;
4. record the attempt and the outcome, with its outbox event, in a new transaction,
   and release the claim.

A new payment's first charge (``pending``, no cancel asked for, a method the provider
knows) takes the fast path: steps 1 and 2 are one transaction for every payment
claimed together, and the final attempt is recorded in step 4's transaction, so a
charge costs two commits; the rules above are the same (``processing`` is committed
before the charge leaves; an attempt the provider answered transiently is recorded
at once). A ChargePayment command goes further (:meth:`PaymentProcessor.request_charge`):
the command's own transaction records the payment claimed and ``processing``, and the
charge is sent once that transaction has committed, so a charge costs the command's
commit and step 4's. Step 4 of a charge the payment still waits for is one
``UPDATE ... RETURNING`` (outcome and release) besides the attempt, ledger and outbox
rows.

A payment whose charge may have been sent (``processing``) is never charged again
blindly: the round first asks the provider for the charge under its key, and sends
the same charge again only if the provider has none (the provider waits for a call
with that key in flight before answering). A replica that dies anywhere in between
leaves a claim that expires; the next round, on any replica, picks the work up.

The background loop (:meth:`PaymentProcessor.run`) is the reconciler: it wakes on
``NOTIFY`` when a payment becomes due and polls besides, for rechecks and expired
claims. HTTP requests run a new payment's first round themselves (:meth:`carry_out`).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, SessionTransaction

from bazaar.contracts.payments import CancelPayment, ChargePayment
from bazaar.kit.db import asyncpg_dsn, transaction
from bazaar.kit.errors import IdempotencyKeyReused
from bazaar.kit.idempotency import claim_key, request_fingerprint, store_response
from bazaar.kit.logging import get_logger
from bazaar.kit.requestcontext import current_correlation_id
from bazaar.kit.tokens import Principal
from bazaar.payments import repository, service
from bazaar.payments.errors import PaymentNotFound
from bazaar.payments.models import AttemptKind, FailureCode, Payment, PaymentAttempt, PaymentStatus
from bazaar.payments.provider import (
    CallOutcome,
    ProviderAnswer,
    ProviderCharge,
    ProviderClient,
    charge_key,
    refund_key,
)
from bazaar.payments.schemas import PaymentCreate
from bazaar.payments.settings import PaymentsSettings

log = get_logger(__name__)

CREATE_SCOPE = "payments.create"
# How often a request waiting for another's round looks again.
_WAIT_INTERVAL_SECONDS = 0.05
# Where a command transaction's session keeps the first charges it claimed, to be sent
# once it commits (the session is the transaction's: see request_charge).
_FIRST_CHARGES = "bazaar.payments.first_charges"


@dataclass(frozen=True, slots=True)
class Claim:
    payment_id: uuid.UUID
    token: uuid.UUID
    # The event loop's time when the claim was asked for, before the database started
    # its lease: the rounds' deadline counts from here, so it ends before the lease.
    taken_at: float
    # Set when the claim's transaction already marked the first charge as sent
    # (``processing``): what the charge is, and the method's provider token.
    charge: Snapshot | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a round needs of a payment, read in a short transaction and then let go."""

    id: uuid.UUID
    status: PaymentStatus
    amount: int
    currency: str
    reference_type: str
    reference_id: uuid.UUID
    attempts: int
    cancel_requested: bool
    provider_charge_id: str | None
    provider_token: str | None

    def charge_request(self) -> dict[str, Any]:
        """The charge's body: derived from the payment only, so every try is the same."""
        return {
            "amount": self.amount,
            "currency": self.currency,
            "description": f"Bazaar {self.reference_type} {self.reference_id}",
            "metadata": {
                "payment_id": str(self.id),
                "reference_type": self.reference_type,
                "reference_id": str(self.reference_id),
            },
        }


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    status_code: int
    body: Any
    replayed: bool


class PaymentProcessor:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        provider: ProviderClient,
        settings: PaymentsSettings,
    ) -> None:
        self._sessions = sessions
        self._provider = provider
        self._settings = settings
        self._dsn = asyncpg_dsn(settings.database_url.get_secret_value())
        self._lease = timedelta(seconds=settings.claim_lease_seconds)
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        # While the loop runs, command transactions may claim first charges for it...
        self._taking_charges = False
        # ...and these many are claimed in transactions that have not ended yet.
        self._promised = 0

    # --- the reconciler loop ---------------------------------------------------------

    async def run(self) -> None:
        """Take due payments until cancelled, at most ``processor_batch_size`` at once."""
        listener = asyncio.create_task(self._listen(), name="payments:due-listener")
        backoff = 0.2
        self._taking_charges = True
        try:
            while True:
                self._wake.clear()
                free = self._settings.processor_batch_size - len(self._running) - self._promised
                try:
                    claims = await self._claim(limit=free) if free > 0 else []
                    backoff = 0.2
                except (SQLAlchemyError, OSError) as exc:
                    log.warning("payment_claim_failed", error=repr(exc), retry_in=backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                for claim in claims:
                    self._start(claim)
                if claims and len(claims) == free:
                    continue
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._settings.processor_poll_seconds):
                        await self._wake.wait()
        finally:
            self._taking_charges = False
            listener.cancel()
            for task in list(self._running):
                task.cancel()
            await asyncio.gather(listener, *self._running, return_exceptions=True)

    def _start(self, claim: Claim) -> None:
        task = asyncio.create_task(self._work(claim))
        self._running.add(task)
        task.add_done_callback(self._round_done)

    def _round_done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if len(self._running) == self._settings.processor_batch_size - 1:
            # The loop was full and stopped claiming: room for one more now.
            self._wake.set()

    async def _listen(self) -> None:
        """Wake the loop on ``NOTIFY`` (a payment became due); reconnect when cut off."""
        backoff = 0.2
        while True:
            try:
                connection = await asyncpg.connect(self._dsn)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("payments_listener_unavailable", error=repr(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.2
            try:
                await self._listen_on(connection)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("payments_listener_lost", error=repr(exc))
            finally:
                with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    await connection.close(timeout=1)

    async def _listen_on(self, connection: asyncpg.Connection) -> None:
        """Listen until the connection ends."""
        closed = asyncio.Event()
        connection.add_termination_listener(lambda _: closed.set())
        await connection.add_listener(repository.DUE_CHANNEL, lambda *_: self._wake.set())
        self._wake.set()  # whatever became due while nobody listened
        await closed.wait()

    async def _claim(self, limit: int, payment_id: uuid.UUID | None = None) -> list[Claim]:
        """Claim due payments; new ones' first charges are marked sent in the same
        transaction (the fast path of the module's docstring)."""
        token = uuid.uuid4()
        taken_at = asyncio.get_running_loop().time()
        async with transaction(self._sessions) as session:
            payments = await repository.claim_due(
                session, token=token, lease=self._lease, limit=limit, payment_id=payment_id
            )
            ids = [payment.id for payment in payments]
            charges = await self._mark_first_charges_sent(session, payments) if payments else {}
        return [Claim(payment_id, token, taken_at, charges.get(payment_id)) for payment_id in ids]

    async def _mark_first_charges_sent(
        self, session: AsyncSession, payments: list[Payment]
    ) -> dict[uuid.UUID, Snapshot]:
        """``processing`` and one more attempt for each claimed payment that is new
        (``pending``, no cancel asked for) and whose method the provider knows; the
        snapshots of their charges. Others go through the rounds as usual."""
        fresh = [
            payment
            for payment in payments
            if payment.status == PaymentStatus.PENDING and not payment.cancel_requested
        ]
        tokens = await repository.provider_tokens(
            session, {payment.payment_method_id for payment in fresh}
        )
        now = service.utc_now()
        charges = {}
        for payment in fresh:
            provider_token = tokens.get(payment.payment_method_id)
            if provider_token is None:
                continue
            payment.status = PaymentStatus.PROCESSING
            payment.attempts += 1
            payment.updated_at = now
            charges[payment.id] = _snapshot_of(payment, provider_token)
        return charges

    # --- commands: a first charge claimed in the command's transaction ---------------

    async def request_charge(
        self, session: AsyncSession, command: ChargePayment, correlation_id: str | None
    ) -> None:
        """ChargePayment, in the command consumer's transaction (``session``).

        While this replica's loop runs and has room, the new payment is recorded claimed
        and ``processing`` (:func:`service.request_charge` with a claim) and its charge is
        sent as soon as the transaction commits: no claim transaction, no second read of
        the method. The consumer may handle several commands in one transaction and roll
        it back (then handle them again), so nothing is sent from here: the claim waits
        in the session until its commit (:meth:`_committed`) and is dropped with a
        rollback (:meth:`_rolled_back`). A replica that dies in between leaves a
        ``processing`` payment whose claim runs out; the reconciler then asks the
        provider under the payment's key before it sends the charge (once).
        """
        claim = None
        room = len(self._running) + self._promised < self._settings.processor_batch_size
        if self._taking_charges and room:
            claim = service.ChargeClaim(token=uuid.uuid4(), lease=self._lease)
        taken_at = asyncio.get_running_loop().time()
        first = await service.request_charge(session, command, correlation_id, claim=claim)
        if first is None or claim is None:
            return
        snapshot = _snapshot_of(first.payment, first.provider_token)
        self._send_after_commit(session, Claim(snapshot.id, claim.token, taken_at, snapshot))

    async def request_cancel(
        self, session: AsyncSession, command: CancelPayment, correlation_id: str | None
    ) -> None:
        """CancelPayment, in the command consumer's transaction (``session``).

        A first charge claimed in this same transaction (its ChargePayment came in the
        same batch) has not been sent, and now never is: the claim is withdrawn and the
        payment, ``pending`` again, is voided like any payment not yet charged.
        """
        waiting: dict[uuid.UUID, Claim] | None = session.info.get(_FIRST_CHARGES)
        claim = waiting.pop(command.payment_id, None) if waiting else None
        if claim is not None:
            self._promised -= 1
            await repository.withdraw_claimed_charge(session, claim.payment_id, claim.token)
        await service.request_cancel(session, command.payment_id, command.reason, correlation_id)

    def _send_after_commit(self, session: AsyncSession, claim: Claim) -> None:
        waiting: dict[uuid.UUID, Claim] | None = session.info.get(_FIRST_CHARGES)
        if waiting is None:
            waiting = session.info[_FIRST_CHARGES] = {}
            event.listen(session.sync_session, "after_commit", self._committed)
            event.listen(session.sync_session, "after_soft_rollback", self._rolled_back)
        waiting[claim.payment_id] = claim
        self._promised += 1

    def _committed(self, session: Session) -> None:
        """The payments are recorded: send their charges (in tasks of the loop)."""
        if session.in_nested_transaction():
            return  # a savepoint released: nothing is committed yet
        for claim in self._take_waiting(session):
            self._start(claim)

    def _rolled_back(self, session: Session, _transaction: SessionTransaction) -> None:
        """The payments were not recorded: their charges must never be sent. (A savepoint
        rolled back drops them too, to be safe: their claims, if committed after all, run
        out and the reconciler takes the payments.)"""
        dropped = self._take_waiting(session)
        if dropped:
            log.info("first_charges_dropped_with_rollback", payments=len(dropped))

    def _take_waiting(self, session: Session) -> list[Claim]:
        waiting: dict[uuid.UUID, Claim] | None = session.info.get(_FIRST_CHARGES)
        if not waiting:
            return []
        claims = list(waiting.values())
        waiting.clear()
        self._promised -= len(claims)
        return claims

    # --- one payment's work ----------------------------------------------------------

    async def _work(self, claim: Claim) -> None:
        """Rounds on one claimed payment until nothing is due now, within the lease."""
        try:
            async with asyncio.timeout_at(claim.taken_at + self._settings.round_deadline_seconds()):
                more = True
                if claim.charge is not None:
                    more = await self._send_charge(claim, claim.charge)
                while more:
                    more = await self._round(claim)
        except TimeoutError:
            # A call may have been in flight when the round was cut off: its outcome is
            # unknown, and the next round asks the provider before doing anything.
            log.warning("payment_round_cut_off", payment_id=str(claim.payment_id))
            with contextlib.suppress(SQLAlchemyError, OSError):
                await self._reschedule(claim, unknown=True)
        except (SQLAlchemyError, OSError) as exc:
            # The claim expires by itself; the next round starts over from the database.
            log.warning("payment_round_failed", payment_id=str(claim.payment_id), error=repr(exc))
        except Exception as exc:  # a bug in one round must not stop the others
            log.exception(
                "payment_round_crashed", payment_id=str(claim.payment_id), error=repr(exc)
            )
            with contextlib.suppress(SQLAlchemyError, OSError):
                await self._reschedule(claim, unknown=False)

    async def _round(self, claim: Claim) -> bool:
        """One step of work; True when more is due at once (a refund after a charge)."""
        snapshot = await self._snapshot(claim)
        if snapshot is None:
            return False
        if snapshot.status in (PaymentStatus.PENDING, PaymentStatus.PROCESSING):
            return await self._charge_round(claim, snapshot)
        if snapshot.status is PaymentStatus.SUCCEEDED and snapshot.cancel_requested:
            await self._refund_round(claim, snapshot)
            return False
        await self._finish(claim, _stop_checking)
        return False

    async def _charge_round(self, claim: Claim, snapshot: Snapshot) -> bool:
        key = charge_key(snapshot.id)
        if snapshot.status is PaymentStatus.PROCESSING:
            # A charge may have been sent before: ask, never send blindly.
            found = await self._call(claim, lambda: self._provider.find_charge(key))
            if found.charge is not None:
                return await self._settle_charge(claim, found.charge, found)
            if found.outcome is not CallOutcome.NOT_FOUND:
                await self._reschedule(claim, unknown=False, attempt=found)
                return False
            if snapshot.cancel_requested:
                await self._void(claim, FailureCode.CANCELLED, found)
                return False
            if snapshot.attempts >= self._settings.max_charge_rounds:
                log.error("payment_given_up", payment_id=str(snapshot.id))
                await self._void(claim, FailureCode.PROCESSING_ERROR, found)
                return False
            await self._record_attempt(claim, found)
        elif snapshot.cancel_requested:
            await self._void(claim, FailureCode.CANCELLED)
            return False
        if snapshot.provider_token is None:
            await self._void(claim, FailureCode.PAYMENT_METHOD_INVALID)
            return False
        if not await self._mark_sent(claim):
            return True  # cancelled (or taken) meanwhile: look again
        return await self._send_charge(claim, snapshot)

    async def _send_charge(self, claim: Claim, snapshot: Snapshot) -> bool:
        """Send the charge (the payment is committed ``processing``) and record what the
        provider answered; True when more is due at once (a refund after a charge)."""
        key = charge_key(snapshot.id)
        token = snapshot.provider_token
        assert token is not None, "a charge is sent with the method's provider token"
        sent = await self._call(
            claim, lambda: self._provider.charge(key, token=token, **snapshot.charge_request())
        )
        if sent.charge is not None:
            return await self._settle_charge(claim, sent.charge, sent)
        if sent.outcome is CallOutcome.REFUSED:
            # The provider refused the request itself: no charge exists under the key.
            code = (
                FailureCode.PAYMENT_METHOD_INVALID
                if sent.error == "token_not_found"
                else FailureCode.PROCESSING_ERROR
            )
            await self._void(claim, code, sent)
            return False
        await self._reschedule(claim, unknown=sent.outcome is CallOutcome.UNKNOWN, attempt=sent)
        return False

    async def _refund_round(self, claim: Claim, snapshot: Snapshot) -> None:
        if snapshot.provider_charge_id is None:
            log.error("refund_without_charge", payment_id=str(snapshot.id))
            await self._finish(claim, _stop_checking)
            return
        charge_id = snapshot.provider_charge_id
        answer = await self._call(
            claim, lambda: self._provider.refund(charge_id, refund_key(snapshot.id))
        )
        if answer.outcome is CallOutcome.SUCCEEDED:
            await self._finish(claim, service.record_refund, attempt=answer)
        elif answer.outcome is CallOutcome.REFUSED:
            # Needs a person: the provider will not refund this charge.
            log.error(
                "refund_refused",
                payment_id=str(snapshot.id),
                charge_id=charge_id,
                error=answer.error,
            )
            await self._finish(claim, _stop_checking, attempt=answer)
        else:
            await self._reschedule(claim, unknown=False, attempt=answer)

    async def _call(
        self, claim: Claim, call: Callable[[], Awaitable[ProviderAnswer]]
    ) -> ProviderAnswer:
        """``call`` until it gets an answer that is not transient, at most ``provider_tries``
        times with doubling backoff. Every attempt is recorded: the transient ones here, at
        once; the one returned by the caller, with what it does about it (in the same
        transaction)."""
        backoff = self._settings.provider_retry_backoff_seconds
        for attempt in range(1, self._settings.provider_tries + 1):
            answer = await call()
            if answer.outcome is not CallOutcome.TRANSIENT:
                return answer
            if attempt < self._settings.provider_tries:
                await self._record_attempt(claim, answer)
                await asyncio.sleep(backoff)
                backoff *= 2
        return answer

    # --- the transactions of a round -------------------------------------------------

    async def _snapshot(self, claim: Claim) -> Snapshot | None:
        async with transaction(self._sessions) as session:
            payment = await repository.get_payment(session, claim.payment_id)
            if payment is None or payment.claim_token != claim.token:
                return None
            method = await repository.get_method(session, payment.payment_method_id)
            return _snapshot_of(payment, method.provider_token if method is not None else None)

    async def _mark_sent(self, claim: Claim) -> bool:
        """``processing`` and one more attempt, committed before the charge leaves."""
        async with transaction(self._sessions) as session:
            payment = await repository.get_payment(session, claim.payment_id, for_update=True)
            if (
                payment is None
                or payment.claim_token != claim.token
                or payment.cancel_requested
                or payment.status not in (PaymentStatus.PENDING, PaymentStatus.PROCESSING)
            ):
                return False
            payment.status = PaymentStatus.PROCESSING
            payment.attempts += 1
            payment.updated_at = service.utc_now()
            return True

    async def _record_attempt(self, claim: Claim, answer: ProviderAnswer) -> None:
        async with transaction(self._sessions) as session:
            await self._add_attempt(session, claim, answer)

    async def _add_attempt(
        self, session: AsyncSession, claim: Claim, answer: ProviderAnswer
    ) -> None:
        await repository.add_attempt(
            session,
            PaymentAttempt(
                payment_id=claim.payment_id,
                kind=AttemptKind(answer.kind),
                idempotency_key=answer.idempotency_key,
                outcome=str(answer.outcome),
                http_status=answer.http_status,
                error=answer.error,
                duration_ms=answer.duration_ms,
            ),
        )
        log.info(
            "provider_call",
            payment_id=str(claim.payment_id),
            kind=answer.kind,
            outcome=str(answer.outcome),
            http_status=answer.http_status,
            error=answer.error,
            duration_ms=answer.duration_ms,
        )

    async def _settle_charge(
        self, claim: Claim, charge: ProviderCharge, attempt: ProviderAnswer | None = None
    ) -> bool:
        """Record the provider's charge with ``attempt``; True when more is due at once
        (a refund, for a cancel asked meanwhile: the claim is kept for it)."""

        async def record(session: AsyncSession, payment: Payment) -> None:
            await service.record_charge(session, payment, charge)

        async with transaction(self._sessions) as session:
            if await service.record_claimed_charge(session, claim.payment_id, claim.token, charge):
                if attempt is not None:
                    await self._add_attempt(session, claim, attempt)
                return False  # final, and the claim released
            payment = await self._apply(session, claim, record, keep_if_due=True, attempt=attempt)
        return payment is not None and payment.claim_token == claim.token

    async def _void(
        self, claim: Claim, code: FailureCode, attempt: ProviderAnswer | None = None
    ) -> None:
        async def void(session: AsyncSession, payment: Payment) -> None:
            await service.void_payment(session, payment, code)

        await self._finish(claim, void, attempt=attempt)

    async def _reschedule(
        self, claim: Claim, *, unknown: bool, attempt: ProviderAnswer | None = None
    ) -> None:
        """No final answer this round: check again after a growing wait."""

        async def later(session: AsyncSession, payment: Payment) -> None:
            if unknown:
                await service.record_unknown(session, payment)
            payment.next_check_at = service.utc_now() + service.recheck_delay(
                payment.rounds,
                self._settings.recheck_first_seconds,
                self._settings.recheck_max_seconds,
            )
            payment.rounds += 1

        await self._finish(claim, later, attempt=attempt)

    async def _finish(
        self,
        claim: Claim,
        change: Callable[[AsyncSession, Payment], Awaitable[None]],
        *,
        keep_if_due: bool = False,
        attempt: ProviderAnswer | None = None,
    ) -> Payment | None:
        """Apply ``change`` to the locked payment and release the claim, in one transaction
        with the record of ``attempt``, the provider call that led to it (``keep_if_due``:
        unless ``change`` left more work due at once, for this round)."""
        async with transaction(self._sessions) as session:
            return await self._apply(
                session, claim, change, keep_if_due=keep_if_due, attempt=attempt
            )

    async def _apply(
        self,
        session: AsyncSession,
        claim: Claim,
        change: Callable[[AsyncSession, Payment], Awaitable[None]],
        *,
        keep_if_due: bool,
        attempt: ProviderAnswer | None,
    ) -> Payment | None:
        """:meth:`_finish` in the caller's transaction."""
        if attempt is not None:
            await self._add_attempt(session, claim, attempt)
        payment = await repository.get_payment(session, claim.payment_id, for_update=True)
        if payment is None:
            return None
        await change(session, payment)
        due_now = payment.next_check_at is not None and payment.next_check_at <= (service.utc_now())
        if payment.claim_token == claim.token and not (keep_if_due and due_now):
            payment.claimed_until = None
            payment.claim_token = None
        return payment

    # --- HTTP: carry out a payment now -----------------------------------------------

    async def carry_out(
        self, caller: Principal, data: PaymentCreate, key: str | None
    ) -> HttpAnswer:
        """Record a payment, run its first round in this request, answer with its state.

        With an Idempotency-Key, the key is claimed with the payment's id in the first
        transaction and the answer stored in the last: a repeat (also a concurrent one)
        finds the same payment and gets the first stored answer; the provider is called
        for it once, under the payment's own key. (``respond_once`` would hold the key's
        transaction open across the provider call: the same table and rules, in two
        steps, through :func:`~bazaar.kit.idempotency.claim_key` and ``store_response``.)
        """
        payment_id = uuid.uuid4()
        fingerprint = request_fingerprint(data)
        correlation_id = current_correlation_id.get()
        async with transaction(self._sessions) as session:
            earlier = None
            if key is not None:
                earlier = await claim_key(
                    session,
                    principal=caller.subject,
                    scope=CREATE_SCOPE,
                    key=key,
                    request_hash=fingerprint,
                    note=str(payment_id),
                )
            if earlier is None:
                await service.open_payment(session, payment_id, data, correlation_id)
            elif earlier.request_hash != fingerprint:
                raise IdempotencyKeyReused()
            elif earlier.response is not None:
                return HttpAnswer(earlier.status_code or 201, earlier.response, replayed=True)
            else:
                assert earlier.note is not None, "a payment's key notes the payment's id"
                payment_id = uuid.UUID(earlier.note)
        await self.process_now(payment_id)
        async with transaction(self._sessions) as session:
            payment = await repository.get_payment(session, payment_id)
            if payment is None:
                raise PaymentNotFound()
            body = service.payment_view(payment).model_dump(mode="json")
            if key is None:
                return HttpAnswer(201, body, replayed=False)
            stored = await store_response(
                session,
                principal=caller.subject,
                scope=CREATE_SCOPE,
                key=key,
                status_code=201,
                response=body,
            )
        replayed = earlier is not None or stored.response != body
        return HttpAnswer(stored.status_code or 201, stored.response, replayed=replayed)

    async def process_now(self, payment_id: uuid.UUID) -> None:
        """Work the payment in this task if it is due and free; else wait for the round
        that holds it to end (within a round's deadline)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.round_deadline_seconds()
        while loop.time() < deadline:
            claims = await self._claim(limit=1, payment_id=payment_id)
            if claims:
                await self._work(claims[0])
                return
            async with self._sessions() as session:
                state = await repository.claim_state(session, payment_id)
            if state is None or not (state.claimed or state.due):
                return  # settled for now: final, or waiting for a later check
            # Another round holds it (or is taking it right now): wait for it to end.
            await asyncio.sleep(_WAIT_INTERVAL_SECONDS)


async def _stop_checking(_session: AsyncSession, payment: Payment) -> None:
    payment.next_check_at = None


def _snapshot_of(payment: Payment, provider_token: str | None) -> Snapshot:
    return Snapshot(
        id=payment.id,
        status=PaymentStatus(payment.status),
        amount=payment.amount,
        currency=payment.currency,
        reference_type=payment.reference_type,
        reference_id=payment.reference_id,
        attempts=payment.attempts,
        cancel_requested=payment.cancel_requested,
        provider_charge_id=payment.provider_charge_id,
        provider_token=provider_token,
    )
