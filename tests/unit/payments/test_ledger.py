"""The ledger's journal entries: two sides, always balanced."""

from __future__ import annotations

import pytest

from bazaar.payments.ledger import Line, UnbalancedEntry, charge_lines, check_balanced, refund_lines
from bazaar.payments.models import Account


@pytest.mark.parametrize("amount", [1, 1250, 99_999_999])
def test_a_charge_and_its_refund_balance_and_cancel_out(amount: int) -> None:
    lines = charge_lines(amount) + refund_lines(amount)
    check_balanced(charge_lines(amount))
    check_balanced(refund_lines(amount))
    balances: dict[Account, int] = {}
    for line in lines:
        balances[line.account] = balances.get(line.account, 0) + line.debit - line.credit
    assert balances == {Account.PROVIDER_CLEARING: 0, Account.MERCHANT_PAYABLE: 0}


def test_a_charge_puts_money_at_the_provider_that_is_owed_on() -> None:
    assert charge_lines(500) == [
        Line(Account.PROVIDER_CLEARING, debit=500),
        Line(Account.MERCHANT_PAYABLE, credit=500),
    ]


@pytest.mark.parametrize(
    "lines",
    [
        [Line(Account.PROVIDER_CLEARING, debit=5), Line(Account.MERCHANT_PAYABLE, credit=4)],
        [Line(Account.PROVIDER_CLEARING, debit=5)],
        [Line(Account.PROVIDER_CLEARING, debit=5, credit=5), Line(Account.MERCHANT_PAYABLE)],
        [Line(Account.PROVIDER_CLEARING, debit=-5), Line(Account.MERCHANT_PAYABLE, credit=-5)],
    ],
)
def test_unbalanced_or_malformed_entries_are_refused(lines: list[Line]) -> None:
    with pytest.raises(UnbalancedEntry):
        check_balanced(lines)
