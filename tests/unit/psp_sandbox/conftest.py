"""A provider over a real ledger file in a temporary directory, with a clock tests set."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bazaar.psp_sandbox.ledger import Ledger
from bazaar.psp_sandbox.service import CardDetails, PspSandbox

APPROVES = "4242424242424242"
DECLINES = "4000000000000002"
INSUFFICIENT_FUNDS = "4000000000009995"
FAILS_FIRST = "4000000000000119"
ANSWERS_LATE = "4000000000000259"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 11, 23, 10, 0, tzinfo=UTC))


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = Ledger.open(tmp_path)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def sandbox(ledger: Ledger, clock: Clock) -> PspSandbox:
    return PspSandbox(ledger, answer_late_delay=30.0, clock=clock)


def card(number: str, exp_month: int = 12, exp_year: int = 2030) -> CardDetails:
    return CardDetails(number=number, exp_month=exp_month, exp_year=exp_year)
