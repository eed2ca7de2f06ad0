"""Every query of the payments service, and only here."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Interval,
    Table,
    and_,
    bindparam,
    exists,
    func,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import ReturningInsert

from bazaar.payments.models import (
    EarlyCancellation,
    LedgerEntry,
    Payment,
    PaymentAttempt,
    PaymentMethod,
)


def _table(model: type[Payment | PaymentAttempt | LedgerEntry]) -> Table:
    """A model's table, for Core inserts (no ORM flush where nothing is read back)."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


# Woken at commit: a payment became due (a new charge, a cancel), so a processor takes
# it within milliseconds instead of at its next poll.
DUE_CHANNEL = "bazaar_payments_due"


# --- payment methods ------------------------------------------------------------------


async def add_method(session: AsyncSession, method: PaymentMethod) -> PaymentMethod:
    session.add(method)
    await session.flush()
    await session.refresh(method)
    return method


async def get_method(
    session: AsyncSession, method_id: uuid.UUID, *, for_update: bool = False
) -> PaymentMethod | None:
    statement = select(PaymentMethod).where(PaymentMethod.id == method_id)
    if for_update:
        statement = statement.with_for_update()
    return (await session.execute(statement)).scalar_one_or_none()


async def list_methods(
    session: AsyncSession,
    user_id: uuid.UUID,
    *,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None = None,
) -> list[PaymentMethod]:
    """A user's methods that are not deleted, newest first, keyset-paginated."""
    statement = select(PaymentMethod).where(
        PaymentMethod.user_id == user_id, PaymentMethod.deleted_at.is_(None)
    )
    if after is not None:
        statement = statement.where(
            tuple_(PaymentMethod.created_at, PaymentMethod.id) < tuple_(*after)
        )
    statement = statement.order_by(PaymentMethod.created_at.desc(), PaymentMethod.id.desc())
    return list((await session.execute(statement.limit(limit))).scalars())


# --- payments -------------------------------------------------------------------------


async def insert_payment(
    session: AsyncSession, payment: Payment, *, notify_due: bool = False
) -> bool:
    """Insert ``payment`` unless one with its id exists; True when inserted.

    ``notify_due``: and wake the processors at commit if it was (as :func:`notify_due`,
    in the same statement)."""
    values = {
        column.key: getattr(payment, column.key)
        for column in Payment.__table__.columns
        if getattr(payment, column.key, None) is not None
    }
    statement = insert(Payment).values(**values).on_conflict_do_nothing().returning(Payment.id)
    if notify_due:
        statement = statement.returning(func.pg_notify(DUE_CHANNEL, ""))
    result = await session.execute(statement)
    return result.first() is not None


async def insert_claimed_payment(
    session: AsyncSession, payment: Payment, *, lease: timedelta
) -> str | None:
    """Insert ``payment`` (a first charge, ``processing`` under the caller's claim token)
    claimed for ``lease``, if it can be charged now: no payment with its id exists, no
    cancel came before it (``early_cancellations``), and its method is the payer's and not
    deleted. The method's provider token when inserted; None when not (the caller finds
    out why, on the general path).

    One statement (``INSERT ... SELECT ... WHERE``) instead of an insert and two reads:
    the common first charge of an order pays for one round trip. The lease runs from
    ``clock_timestamp()`` (when the row is written), not from ``now()`` (when the
    transaction began, which may be a batch of commands earlier), so the claim never ends
    before the processor's round deadline, counted from before this statement.
    """
    table = _table(Payment)
    assert not any(
        getattr(payment, column.key, None) is not None
        for column in table.columns
        if column.key not in _CLAIMED_PAYMENT_COLUMNS
    ), "insert_claimed_payment writes only _CLAIMED_PAYMENT_COLUMNS"
    parameters: dict[str, Any] = {key: getattr(payment, key) for key in _CLAIMED_PAYMENT_COLUMNS}
    parameters["lease"] = lease
    token: str | None = (
        await session.execute(_insert_claimed_payment(), parameters)
    ).scalar_one_or_none()
    return token


# What a first charge sets (service._record_first_charge); the other columns take their
# server defaults.
_CLAIMED_PAYMENT_COLUMNS = (
    "id",
    "user_id",
    "amount",
    "currency",
    "status",
    "reference_type",
    "reference_id",
    "payment_method_id",
    "correlation_id",
    "next_check_at",
    "attempts",
    "claim_token",
    "cancel_requested",
)


@functools.cache
def _insert_claimed_payment() -> ReturningInsert[Any]:
    """The statement of :func:`insert_claimed_payment`, built once: every charge runs it, and
    building the construct and its cache key anew each time was most of its Python cost."""
    table = _table(Payment)
    method_usable = exists().where(
        PaymentMethod.id == bindparam("payment_method_id"),
        PaymentMethod.user_id == bindparam("user_id"),
        PaymentMethod.deleted_at.is_(None),
    )
    cancelled_first = exists().where(EarlyCancellation.payment_id == bindparam("id"))
    row = select(
        *(bindparam(key, type_=table.c[key].type) for key in _CLAIMED_PAYMENT_COLUMNS),
        func.clock_timestamp() + bindparam("lease", type_=Interval()),
    ).where(method_usable, ~cancelled_first)
    provider_token = (
        select(PaymentMethod.provider_token)
        .where(PaymentMethod.id == bindparam("payment_method_id"))
        .scalar_subquery()
    )
    return (
        insert(table)
        .from_select([*_CLAIMED_PAYMENT_COLUMNS, "claimed_until"], row)
        .on_conflict_do_nothing()
        .returning(provider_token)
    )


async def withdraw_claimed_charge(
    session: AsyncSession, payment_id: uuid.UUID, claim_token: uuid.UUID
) -> None:
    """Undo :func:`insert_claimed_payment` within its own transaction (the charge was not
    sent): ``pending``, no attempt, unclaimed, as the general path records a payment."""
    await session.execute(
        update(Payment)
        .where(Payment.id == payment_id, Payment.claim_token == claim_token)
        .values(status="pending", attempts=0, claimed_until=None, claim_token=None)
        .execution_options(synchronize_session=False)
    )


async def settle_claimed_charge(
    session: AsyncSession,
    payment_id: uuid.UUID,
    claim_token: uuid.UUID,
    *,
    status: str,
    failure_code: str | None,
    provider_charge_id: str,
    now: datetime,
) -> Payment | None:
    """Record a charge's final answer and release the claim in one statement, if the
    payment is still claimed by ``claim_token``, waiting for its answer (``pending`` or
    ``processing``) and no cancel was asked for; the payment as updated, else None.

    The common end of a charge, as one ``UPDATE ... RETURNING`` instead of a locked read
    and two flushed updates; anything else (a cancel meanwhile, a claim lost, a payment
    already final) is left to the general path, which the caller takes when None.
    """
    result = await session.execute(
        update(Payment)
        .where(
            Payment.id == payment_id,
            Payment.claim_token == claim_token,
            Payment.status.in_(("pending", "processing")),
            Payment.cancel_requested.is_(False),
        )
        .values(
            status=status,
            failure_code=failure_code,
            provider_charge_id=provider_charge_id,
            rounds=0,
            next_check_at=None,
            updated_at=now,
            claimed_until=None,
            claim_token=None,
        )
        .returning(Payment)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    return result.scalar_one_or_none()


async def get_payment(
    session: AsyncSession, payment_id: uuid.UUID, *, for_update: bool = False
) -> Payment | None:
    statement = select(Payment).where(Payment.id == payment_id)
    if for_update:
        statement = statement.with_for_update().execution_options(populate_existing=True)
    return (await session.execute(statement)).scalar_one_or_none()


async def provider_tokens(
    session: AsyncSession, method_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, str]:
    """The provider's token of each of ``method_ids`` that exists (deleted ones too, as a
    payment already asked for is charged with the method it named)."""
    if not method_ids:
        return {}
    rows = await session.execute(
        select(PaymentMethod.id, PaymentMethod.provider_token).where(
            PaymentMethod.id.in_(list(method_ids))
        )
    )
    return {row.id: row.provider_token for row in rows}


async def list_payments(
    session: AsyncSession,
    *,
    limit: int,
    user_id: uuid.UUID | None = None,
    reference_type: str | None = None,
    reference_id: uuid.UUID | None = None,
    status: str | None = None,
    after: tuple[datetime, uuid.UUID] | None = None,
) -> list[Payment]:
    """Payments, newest first, keyset-paginated on (created_at, id)."""
    statement = select(Payment)
    if user_id is not None:
        statement = statement.where(Payment.user_id == user_id)
    if reference_type is not None:
        statement = statement.where(Payment.reference_type == reference_type)
    if reference_id is not None:
        statement = statement.where(Payment.reference_id == reference_id)
    if status is not None:
        statement = statement.where(Payment.status == status)
    if after is not None:
        statement = statement.where(tuple_(Payment.created_at, Payment.id) < tuple_(*after))
    statement = statement.order_by(Payment.created_at.desc(), Payment.id.desc()).limit(limit)
    return list((await session.execute(statement)).scalars())


async def notify_due(session: AsyncSession) -> None:
    """Wake the processors when this transaction commits."""
    await session.execute(text(f"NOTIFY {DUE_CHANNEL}"))


async def claim_due(
    session: AsyncSession,
    *,
    token: uuid.UUID,
    lease: timedelta,
    limit: int,
    payment_id: uuid.UUID | None = None,
) -> list[Payment]:
    """Reserve up to ``limit`` due payments that nobody holds for ``lease``; the claimed
    payments, as updated (the rows stay locked until the transaction ends).

    ``FOR UPDATE SKIP LOCKED`` lets replicas claim side by side without waiting on
    each other or taking the same row; the lease (``claimed_until``) keeps the payment
    theirs after this short transaction commits, while they call the provider.
    """
    now = func.now()
    candidates = (
        select(Payment.id)
        .where(
            Payment.next_check_at <= now,
            or_(Payment.claimed_until.is_(None), Payment.claimed_until < now),
        )
        .order_by(Payment.next_check_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if payment_id is not None:
        candidates = candidates.where(Payment.id == payment_id)
    result = await session.execute(
        update(Payment)
        .where(Payment.id.in_(candidates.scalar_subquery()))
        .values(claimed_until=now + lease, claim_token=token)
        .returning(Payment)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    return list(result.scalars())


@dataclass(frozen=True, slots=True)
class ClaimState:
    claimed: bool
    due: bool


async def claim_state(session: AsyncSession, payment_id: uuid.UUID) -> ClaimState | None:
    """Whether someone holds the payment now, and whether it waits for a processor."""
    now = func.now()
    row = (
        await session.execute(
            select(
                and_(Payment.claimed_until.is_not(None), Payment.claimed_until >= now).label(
                    "claimed"
                ),
                and_(Payment.next_check_at.is_not(None), Payment.next_check_at <= now).label("due"),
            ).where(Payment.id == payment_id)
        )
    ).first()
    if row is None:
        return None
    return ClaimState(claimed=bool(row.claimed), due=bool(row.due))


async def add_attempt(session: AsyncSession, attempt: PaymentAttempt) -> None:
    """A Core insert: nothing reads the row back, so no ORM flush (and no RETURNING id)."""
    await session.execute(insert(_table(PaymentAttempt)).values(**_set_columns(attempt)))


async def add_ledger_entries(session: AsyncSession, entries: Sequence[LedgerEntry]) -> None:
    """The lines of an entry in one multi-row Core insert (nothing reads them back)."""
    await session.execute(
        insert(_table(LedgerEntry)).values([_set_columns(entry) for entry in entries])
    )


def _set_columns(row: PaymentAttempt | LedgerEntry) -> dict[str, Any]:
    """The columns given a value (the others take their defaults in the database)."""
    return {
        column.key: getattr(row, column.key)
        for column in _table(type(row)).columns
        if getattr(row, column.key, None) is not None
    }


async def add_early_cancellation(session: AsyncSession, cancellation: EarlyCancellation) -> None:
    await session.execute(
        insert(EarlyCancellation)
        .values(
            payment_id=cancellation.payment_id,
            reason=cancellation.reason,
            correlation_id=cancellation.correlation_id,
        )
        .on_conflict_do_nothing()
    )


async def get_early_cancellation(
    session: AsyncSession, payment_id: uuid.UUID
) -> EarlyCancellation | None:
    return await session.get(EarlyCancellation, payment_id)
