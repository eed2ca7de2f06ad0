"""The double-entry ledger: which accounts a charge and a refund move, always balanced.

Every movement of money is one journal entry of two or more lines sharing an
``entry_id``; the debits of an entry equal its credits, so the whole ledger sums to
zero and every account's balance can be explained line by line. A captured charge
puts money at the provider that we owe on (``provider_clearing`` debit,
``merchant_payable`` credit); a refund takes it back out of both.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.payments import repository
from bazaar.payments.models import Account, EntryKind, LedgerEntry, Payment


@dataclass(frozen=True, slots=True)
class Line:
    account: Account
    debit: int = 0
    credit: int = 0


class UnbalancedEntry(ValueError):
    """A journal entry whose debits and credits differ: a bug, never written."""


def charge_lines(amount: int) -> list[Line]:
    return [
        Line(Account.PROVIDER_CLEARING, debit=amount),
        Line(Account.MERCHANT_PAYABLE, credit=amount),
    ]


def refund_lines(amount: int) -> list[Line]:
    return [
        Line(Account.MERCHANT_PAYABLE, debit=amount),
        Line(Account.PROVIDER_CLEARING, credit=amount),
    ]


def check_balanced(lines: list[Line]) -> None:
    if len(lines) < 2:
        raise UnbalancedEntry("a journal entry needs two lines at least")
    for line in lines:
        if line.debit < 0 or line.credit < 0 or (line.debit > 0) == (line.credit > 0):
            raise UnbalancedEntry(f"a line is a debit or a credit, positive: {line}")
    debits = sum(line.debit for line in lines)
    credits = sum(line.credit for line in lines)
    if debits != credits:
        raise UnbalancedEntry(f"debits {debits} != credits {credits}")


async def post(session: AsyncSession, payment: Payment, kind: EntryKind, lines: list[Line]) -> None:
    """Write one balanced journal entry for ``payment`` in the caller's transaction."""
    check_balanced(lines)
    entry_id = uuid.uuid4()
    await repository.add_ledger_entries(
        session,
        [
            LedgerEntry(
                entry_id=entry_id,
                payment_id=payment.id,
                kind=kind,
                account=line.account,
                debit=line.debit,
                credit=line.credit,
                currency=payment.currency,
            )
            for line in lines
        ],
    )
