"""The sandbox's ledger: every token, charge, refund and failed first attempt, in order.

An append-only JSON-lines file under the data directory, one record a line, written
and fsync'd before the answer goes out, and replayed into memory at startup; the
in-memory indexes are built by the same ``_apply`` at replay and at run time, so a
restarted sandbox knows exactly what it knew before.

No record holds a card number: a token keeps the card's behaviour class, brand, last
four digits and expiry, which is all the sandbox needs to act as the card would.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from bazaar.kit.logging import get_logger
from bazaar.psp_sandbox.errors import LedgerCorrupt, LedgerInUse

log = get_logger(__name__)

LEDGER_FILE = "ledger.jsonl"


class CardBehaviour(StrEnum):
    """What a card does when charged; the token keeps this instead of the number."""

    APPROVE = "approve"
    DECLINE = "decline"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    FAIL_FIRST_ATTEMPT = "fail_first_attempt"
    ANSWER_LATE = "answer_late"


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TokenIssued(_Record):
    type: Literal["token_issued"] = "token_issued"
    token: str
    behaviour: CardBehaviour
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    created_at: datetime


class ChargeMade(_Record):
    """A charge the provider made, succeeded or failed, under one idempotency key."""

    type: Literal["charge_made"] = "charge_made"
    id: str
    idempotency_key: str
    fingerprint: str
    token: str
    behaviour: CardBehaviour
    amount: int
    currency: str
    status: Literal["succeeded", "failed"]
    failure_code: str | None = None
    failure_message: str | None = None
    description: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    brand: str
    last4: str
    created_at: datetime


class FirstAttemptFailed(_Record):
    """The 500 answered to a key's first attempt (no charge made); the next one goes through."""

    type: Literal["first_attempt_failed"] = "first_attempt_failed"
    idempotency_key: str
    fingerprint: str
    created_at: datetime


class RefundMade(_Record):
    type: Literal["refund_made"] = "refund_made"
    id: str
    charge_id: str
    idempotency_key: str
    fingerprint: str
    amount: int
    currency: str
    created_at: datetime


LedgerRecord = Annotated[
    TokenIssued | ChargeMade | FirstAttemptFailed | RefundMade, Field(discriminator="type")
]
_records: TypeAdapter[LedgerRecord] = TypeAdapter(LedgerRecord)


@dataclass
class ChargeState:
    """A charge and the refunds made against it."""

    charge: ChargeMade
    refunds: list[RefundMade] = field(default_factory=list)

    @property
    def refunded_amount(self) -> int:
        return sum(refund.amount for refund in self.refunds)

    @property
    def refundable_amount(self) -> int:
        if self.charge.status != "succeeded":
            return 0
        return self.charge.amount - self.refunded_amount


class Ledger:
    """The file and the indexes replayed from it. Open with :meth:`open`, one process a file."""

    def __init__(self, path: Path, file: IO[bytes]) -> None:
        self.path = path
        self._file = file
        self._write_lock = asyncio.Lock()
        self.tokens: dict[str, TokenIssued] = {}
        self.charges: dict[str, ChargeState] = {}
        self.charges_by_key: dict[str, ChargeState] = {}
        self.first_attempts: dict[str, FirstAttemptFailed] = {}
        self.refunds_by_key: dict[tuple[str, str], RefundMade] = {}

    @classmethod
    def open(cls, data_dir: Path) -> Ledger:
        """Lock and replay ``data_dir/ledger.jsonl`` (created if absent); blocking I/O."""
        data_dir.mkdir(parents=True, exist_ok=True)
        path = data_dir / LEDGER_FILE
        created = not path.exists()
        file = path.open("a+b")
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.close()
            raise LedgerInUse(f"another sandbox process holds {path}") from None
        try:
            if created:
                _fsync_directory(data_dir)
            ledger = cls(path, file)
            ledger._replay()
        except BaseException:
            file.close()
            raise
        return ledger

    def _replay(self) -> None:
        self._file.seek(0)
        content = self._file.read()
        complete, _, torn = content.rpartition(b"\n")
        if torn:
            # A crash in the middle of an append leaves a line without its newline; that
            # record was never acknowledged, so dropping it loses nothing anyone was told.
            log.warning("ledger_torn_tail_dropped", path=str(self.path), bytes=len(torn))
            self._file.truncate(len(complete) + 1 if complete else 0)
            self._file.flush()
            os.fsync(self._file.fileno())
        count = 0
        for number, line in enumerate(complete.split(b"\n") if complete else [], start=1):
            if not line.strip():
                continue
            try:
                record = _records.validate_json(line)
            except ValidationError as exc:
                raise LedgerCorrupt(
                    f"{self.path}: line {number} is not a ledger record ({exc.error_count()} "
                    "errors)"
                ) from None
            try:
                self._apply(record)
            except KeyError:
                raise LedgerCorrupt(
                    f"{self.path}: line {number} refers to a record the ledger does not hold"
                ) from None
            count += 1
        self._file.seek(0, os.SEEK_END)
        log.info(
            "ledger_replayed",
            path=str(self.path),
            records=count,
            charges=len(self.charges),
            tokens=len(self.tokens),
        )

    async def append(self, record: LedgerRecord) -> None:
        """Write ``record`` durably, then make it visible in the indexes.

        Shielded: a caller cancelled mid-write must not leave a record in the file that
        the indexes lack (the file would say "charged" while memory says "not yet").
        """
        await asyncio.shield(self._append(record))

    async def _append(self, record: LedgerRecord) -> None:
        line = _records.dump_json(record) + b"\n"
        async with self._write_lock:
            await asyncio.to_thread(self._write, line)
            self._apply(record)

    def _write(self, line: bytes) -> None:
        self._file.write(line)
        self._file.flush()
        os.fsync(self._file.fileno())

    def _apply(self, record: LedgerRecord) -> None:
        match record:
            case TokenIssued():
                self.tokens[record.token] = record
            case ChargeMade():
                state = ChargeState(record)
                self.charges[record.id] = state
                self.charges_by_key[record.idempotency_key] = state
            case FirstAttemptFailed():
                self.first_attempts[record.idempotency_key] = record
            case RefundMade():
                self.charges[record.charge_id].refunds.append(record)
                self.refunds_by_key[(record.charge_id, record.idempotency_key)] = record

    def close(self) -> None:
        self._file.close()


def _fsync_directory(directory: Path) -> None:
    """Make a new file's directory entry durable, not only its contents."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
