"""The ledger file: replayed as it was written, torn tails dropped, one process at a time."""

from __future__ import annotations

from pathlib import Path

import pytest

from bazaar.kit.errors import IdempotencyKeyReused
from bazaar.psp_sandbox.errors import LedgerCorrupt, LedgerInUse, ProcessingError
from bazaar.psp_sandbox.ledger import Ledger
from bazaar.psp_sandbox.service import ChargeRequest, PspSandbox
from tests.unit.psp_sandbox.conftest import APPROVES, FAILS_FIRST, Clock, card


async def test_a_reopened_ledger_knows_everything_it_was_told(tmp_path: Path, clock: Clock) -> None:
    ledger = Ledger.open(tmp_path)
    sandbox = PspSandbox(ledger, answer_late_delay=0, clock=clock)
    token = (await sandbox.issue_token(card(APPROVES))).token
    charge = (await sandbox.charge("k1", ChargeRequest(1000, "EUR", token))).state
    await sandbox.refund(charge.charge.id, "r1", 250)
    fails_first = (await sandbox.issue_token(card(FAILS_FIRST))).token
    with pytest.raises(ProcessingError):
        await sandbox.charge("k2", ChargeRequest(500, "EUR", fails_first))
    ledger.close()

    reopened = Ledger.open(tmp_path)
    again = PspSandbox(reopened, answer_late_delay=0, clock=clock)

    replayed = again.get_charge(charge.charge.id)
    assert replayed.charge == charge.charge
    assert replayed.refunded_amount == 250
    assert (await again.charge("k1", ChargeRequest(1000, "EUR", token))).replayed
    with pytest.raises(IdempotencyKeyReused):
        await again.charge("k1", ChargeRequest(999, "EUR", token))
    second_attempt = await again.charge("k2", ChargeRequest(500, "EUR", fails_first))
    assert second_attempt.state.charge.status == "succeeded"
    reopened.close()


async def test_a_torn_last_line_is_dropped(tmp_path: Path, clock: Clock) -> None:
    ledger = Ledger.open(tmp_path)
    await PspSandbox(ledger, answer_late_delay=0, clock=clock).issue_token(card(APPROVES))
    ledger.close()
    path = tmp_path / "ledger.jsonl"
    intact = path.read_bytes()
    path.write_bytes(intact + b'{"type": "charge_ma')

    reopened = Ledger.open(tmp_path)

    assert len(reopened.tokens) == 1
    assert path.read_bytes() == intact
    reopened.close()


def test_a_corrupt_line_in_the_middle_refuses_to_start(tmp_path: Path) -> None:
    (tmp_path / "ledger.jsonl").write_bytes(b'{"type": "nonsense"}\n')

    with pytest.raises(LedgerCorrupt):
        Ledger.open(tmp_path)


def test_a_refund_of_a_charge_the_ledger_lacks_refuses_to_start(tmp_path: Path) -> None:
    (tmp_path / "ledger.jsonl").write_bytes(
        b'{"type":"refund_made","id":"re_1","charge_id":"ch_1","idempotency_key":"r",'
        b'"fingerprint":"f","amount":1,"currency":"USD","created_at":"2026-11-23T10:00:00Z"}\n'
    )

    with pytest.raises(LedgerCorrupt):
        Ledger.open(tmp_path)


def test_one_process_at_a_time(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path)
    try:
        with pytest.raises(LedgerInUse):
            Ledger.open(tmp_path)
    finally:
        ledger.close()
