"""Where the bids on one auction meet, in each replica: a line per auction, decided and
written in batches.

A popular auction gets many bids at once, and each must be decided on the state the
previous one left. Instead of every request competing for the auction's row, the bids
that reach this replica queue in a line, and one worker per auction takes what has
queued, decides it in arrival order (:class:`~bazaar.auctions.service.BidBatch`) and
writes it with one compare-and-set statement (repository.py, "the bid path"). A batch
costs two round trips, whatever its size; bids too low for the price just read are
refused with no write at all. Replicas do not coordinate: when another replica (or a
close) changed the auction between the look and the write, the write changes nothing
and the batch is decided again; its last try holds the row lock.

Each request waits for its own answer (a future); a request that gave up waiting (the
client left) is skipped if its batch has not started, and otherwise takes effect like
any request whose answer was lost (its Idempotency-Key, if any, gives the answer again).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

import asyncpg

from bazaar.auctions import metrics, repository, service
from bazaar.auctions.errors import AuctionNotFound, BidTooLow
from bazaar.auctions.service import BidAnswer, BidBatch, BidRequest
from bazaar.kit.errors import DomainError, IdempotencyKeyReused, ServiceUnavailable
from bazaar.kit.idempotency import KEY_LIFETIME
from bazaar.kit.logging import get_logger

log = get_logger(__name__)


@dataclass(slots=True)
class _Waiting:
    request: BidRequest
    answer: asyncio.Future[BidAnswer]


@dataclass(slots=True)
class _Line:
    waiting: list[_Waiting] = field(default_factory=list)
    worker: asyncio.Task[None] | None = None
    # The least acceptable amount as of the last look or write: prices only rise, so a
    # bid below it (without an Idempotency-Key to answer for) is refused on the spot.
    minimum: int | None = None


class BidDesk:
    """The lines of this replica, one per auction with bids in flight."""

    def __init__(
        self, connections: asyncpg.Pool, *, batch_size: int = 200, attempts: int = 3
    ) -> None:
        self._connections = connections
        self._batch_size = batch_size
        self._attempts = attempts
        self._lines: dict[uuid.UUID, _Line] = {}

    async def place(self, auction_id: uuid.UUID, request: BidRequest) -> BidAnswer:
        """Queue the bid and wait for its answer (or its refusal, raised)."""
        line = self._lines.get(auction_id)
        if line is None:
            line = self._lines[auction_id] = _Line()
        elif (
            request.claim is None
            and line.minimum is not None
            and request.data.amount < line.minimum
        ):
            raise BidTooLow(
                f"The least bid accepted now is {line.minimum}", minimum_amount=line.minimum
            )
        answer: asyncio.Future[BidAnswer] = asyncio.get_running_loop().create_future()
        line.waiting.append(_Waiting(request, answer))
        if line.worker is None:
            line.worker = asyncio.create_task(
                self._work(auction_id, line), name=f"auctions:bids:{auction_id}"
            )
        return await answer

    async def close(self) -> None:
        workers = [line.worker for line in self._lines.values() if line.worker is not None]
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)

    async def _work(self, auction_id: uuid.UUID, line: _Line) -> None:
        try:
            while line.waiting:
                batch = [w for w in line.waiting[: self._batch_size] if not w.answer.done()]
                del line.waiting[: self._batch_size]
                if not batch:
                    continue
                try:
                    async with self._connections.acquire() as conn:
                        line.minimum = await self._settle(conn, auction_id, batch)
                except Exception as exc:  # noqa: BLE001 - each waiting request gets it
                    log.warning("bid_batch_failed", auction_id=str(auction_id), error=repr(exc))
                    for waiting in batch:
                        if not waiting.answer.done():
                            waiting.answer.set_exception(exc)
        finally:
            # No await since the loop condition: nothing can have queued in between.
            line.worker = None
            if not line.waiting and self._lines.get(auction_id) is line:
                del self._lines[auction_id]

    async def _settle(
        self, conn: asyncpg.Connection, auction_id: uuid.UUID, batch: list[_Waiting]
    ) -> int | None:
        """Answer the whole batch; returns the least acceptable amount after it."""
        for attempt in range(1, self._attempts + 1):
            if attempt < self._attempts:
                settled, minimum = await self._try(conn, auction_id, batch)
                if settled:
                    return minimum
                continue
            # The last try holds the row: its write cannot lose.
            async with conn.transaction():
                await repository.lock_snapshot(conn, auction_id)
                settled, minimum = await self._try(conn, auction_id, batch)
                if settled:
                    return minimum
        raise ServiceUnavailable("The bid could not be written; try again")

    async def _try(
        self, conn: asyncpg.Connection, auction_id: uuid.UUID, batch: list[_Waiting]
    ) -> tuple[bool, int | None]:
        """Decide the batch on the auction as committed now and write it. (False, _): the
        auction changed meanwhile, nothing was written and nobody answered; else (True,
        the least acceptable amount after the batch)."""
        claims = _distinct_claims(batch)
        auction, stored = await repository.look(conn, auction_id, claims, KEY_LIFETIME)
        if auction is None:
            for waiting in batch:
                _answer(waiting, AuctionNotFound())
            return True, None
        decided = BidBatch(auction, service.utcnow())
        outcomes: list[BidAnswer | DomainError] = []
        accepted_by_key: dict[tuple[str, str], tuple[str, bytes]] = {}
        for waiting in batch:
            request = waiting.request
            claim = request.claim
            key = None if claim is None else (claim.principal, claim.key)
            outcome: BidAnswer | DomainError
            if claim is not None and key in stored:
                outcome = _replayed(claim, stored[key])
            elif claim is not None and key in accepted_by_key:
                # The same request twice in one batch: the first one's answer.
                request_hash, body = accepted_by_key[key]
                outcome = (
                    BidAnswer(201, body, replayed=True)
                    if request_hash == claim.request_hash
                    else IdempotencyKeyReused()
                )
            else:
                try:
                    body = decided.place(request.bidder_id, request.data)
                except DomainError as exc:
                    outcome = exc
                else:
                    outcome = BidAnswer(201, body)
                    if claim is not None and key is not None:
                        decided.keep_answer(claim, body)
                        accepted_by_key[key] = (claim.request_hash, body)
            outcomes.append(outcome)
        if decided.changed:
            if not await decided.write(conn):
                return False, None
            automatic = sum(1 for bid in decided.bids if bid.auto)
            metrics.bids_accepted(len(decided.bids) - automatic, automatic)
        for waiting, outcome in zip(batch, outcomes, strict=True):
            _answer(waiting, outcome)
        return True, service.bidding_state(decided.state).minimum_bid


def _distinct_claims(batch: list[_Waiting]) -> list[repository.KeyClaim]:
    claims: dict[tuple[str, str], repository.KeyClaim] = {}
    for waiting in batch:
        claim = waiting.request.claim
        if claim is not None:
            claims.setdefault((claim.principal, claim.key), claim)
    return list(claims.values())


def _replayed(
    claim: repository.KeyClaim, stored: repository.StoredAnswer
) -> BidAnswer | DomainError:
    try:
        return service.replay(claim, stored)
    except DomainError as exc:
        return exc


def _answer(waiting: _Waiting, outcome: BidAnswer | DomainError) -> None:
    if waiting.answer.done():
        return
    if isinstance(outcome, BidAnswer):
        waiting.answer.set_result(outcome)
    else:
        waiting.answer.set_exception(outcome)
