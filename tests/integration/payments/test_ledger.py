"""The double-entry ledger balances, and agrees with the provider's own ledger."""

from __future__ import annotations

import uuid
from collections import defaultdict

from sqlalchemy import select

from bazaar.contracts import payments as contract
from bazaar.payments.models import LedgerEntry
from tests.integration.payments.conftest import CARDS, Payments, charge_command


async def test_every_movement_is_balanced_and_matches_the_provider(payments: Payments) -> None:
    user = str(uuid.uuid4())
    approves = await payments.add_method(user)
    declines = await payments.add_method(user, CARDS["declines"])
    kept = [charge_command(approves, user, amount=amount) for amount in (1000, 2500, 40)]
    refunded = charge_command(approves, user, amount=700)
    declined = charge_command(declines, user, amount=300)
    await payments.send(*kept, refunded, declined)
    for command in [*kept, refunded]:
        await payments.wait_status(command.payment_id, "succeeded")
    await payments.wait_status(declined.payment_id, "failed")
    await payments.send(contract.CancelPayment(payment_id=refunded.payment_id, reason="test"))
    await payments.wait_status(refunded.payment_id, "refunded")

    async with payments.sessions() as session:
        entries = list((await session.execute(select(LedgerEntry))).scalars())

    by_entry: dict[uuid.UUID, list[LedgerEntry]] = defaultdict(list)
    for line in entries:
        by_entry[line.entry_id].append(line)
    assert len(by_entry) == 5  # four charges and one refund; nothing for the decline
    for lines in by_entry.values():
        assert sum(line.debit for line in lines) == sum(line.credit for line in lines)
        assert len({line.payment_id for line in lines}) == 1
    assert sum(line.debit for line in entries) == sum(line.credit for line in entries)
    assert not [line for line in entries if line.payment_id == declined.payment_id]

    balances: dict[str, int] = defaultdict(int)
    for line in entries:
        balances[line.account] += line.debit - line.credit
    held = 1000 + 2500 + 40
    assert balances == {"provider_clearing": held, "merchant_payable": -held}

    # What the provider says it holds for these payments is what the ledger says.
    at_provider = 0
    for command in [*kept, refunded, declined]:
        for charge in await payments.sandbox.charges(f"pay-{command.payment_id}"):
            if charge["status"] == "succeeded":
                at_provider += charge["amount"] - charge["refunded_amount"]
    assert at_provider == balances["provider_clearing"]
