"""The auctions' rules in action: create, bid, buy now, cancel, open, close, settle.

Functions take the caller's session and never commit: the request's edge (or the
scheduler's or consumer's transaction) does, so a change, its stream events and its
outbox messages land in one transaction. Every change to an auction either holds its
row lock or is a compare-and-set on its ``sequence`` (bids, see :class:`BidBatch` and
bidding.py), which is what makes accepted bids strictly increasing and the close happen
once however many replicas run.

What a transaction announces is collected in an :class:`Announcements`: stream events
(numbered by the auction's ``sequence``) for ``/stream`` and contract messages for the
outbox; the repository writes both in one statement.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.auctions import metrics, repository, rules, saga
from bazaar.auctions.errors import (
    AuctionHasBids,
    AuctionNotCancellable,
    AuctionNotFound,
    AuctionNotOpen,
    BidderFilterForbidden,
    BuyNowUnavailable,
    NotAuctionSeller,
    OwnAuction,
    SettlementNotRetryable,
)
from bazaar.auctions.models import Auction, AuctionSnapshot, Bid, SettlementAttempt
from bazaar.auctions.repository import NewBid, Outgoing, StreamRow
from bazaar.auctions.schemas import (
    AuctionCreate,
    AuctionPage,
    AuctionRead,
    BidCreate,
    BidderStanding,
    BidPage,
    BidRead,
    BuyNow,
    CancelAuction,
    RetrySettlement,
)
from bazaar.contracts import payments
from bazaar.contracts.auctions import (
    AuctionCancelled,
    AuctionClosed,
    AuctionCreated,
    AuctionExtended,
    AuctionOpened,
    AuctionSettled,
    AuctionUnsold,
    BidAccepted,
    SettlementAttempted,
)
from bazaar.contracts.base import Message
from bazaar.kit.errors import (
    IdempotencyKeyReused,
    ValidationFailed,
)
from bazaar.kit.idempotency import KEY_LIFETIME, request_fingerprint
from bazaar.kit.messaging.outbox import message_envelope
from bazaar.kit.pagination import PageParams, cursor_part, decode_cursor, encode_cursor
from bazaar.kit.tokens import ROLE_SERVICE, Principal

SOURCE = "bazaar/auctions"
MAX_DURATION = timedelta(days=30)
# A starts_at this little in the past is taken as "now" (clocks differ a little).
STARTS_AT_TOLERANCE = timedelta(minutes=1)
# Who sees an auction's reserve and every bidder's maximum, and may cancel any auction.
STAFF = frozenset({"support", "admin"})
# PostgreSQL refuses notifications of 8000 bytes or more: the stream's are split below it.
NOTIFY_LIMIT = 7900


def utcnow() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _optional_str(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


# --- what a transaction announces -----------------------------------------------------


def public_state(auction: AuctionSnapshot) -> dict[str, Any]:
    """The auction as anyone may see it: the data of every stream event."""
    return {
        "id": str(auction.id),
        "seller_id": str(auction.seller_id),
        "title": auction.title,
        "currency": auction.currency,
        "starting_price": auction.starting_price,
        "min_increment": auction.min_increment,
        "buy_now_price": auction.buy_now_price,
        "current_price": auction.current_price,
        "bid_count": auction.bid_count,
        "reserve_met": rules.reserve_met(auction.reserve_price, auction.current_price),
        "starts_at": rfc3339(auction.starts_at),
        "ends_at": rfc3339(auction.ends_at),
        "soft_close_seconds": auction.soft_close_seconds,
        "max_extensions": auction.max_extensions,
        "extensions": auction.extensions,
        "status": auction.status,
        "status_reason": auction.status_reason,
        "winner_id": _optional_str(auction.winner_id),
        "final_price": auction.final_price,
        "payment_id": _optional_str(auction.payment_id),
    }


class Announcements:
    """Stream events and outbox messages of one transaction about one auction."""

    def __init__(self, auction: AuctionSnapshot, now: datetime) -> None:
        self.auction_id = auction.id
        self.sequence = auction.sequence
        self.now = now
        self.events: list[StreamRow] = []
        self.messages: list[Outgoing] = []

    def stream(self, type_: str, state: AuctionSnapshot, **extra: Any) -> int:
        """Add a stream event showing ``state``; returns its sequence number."""
        self.sequence += 1
        data = public_state(state)
        data.update(extra)
        self.events.append(StreamRow(self.sequence, type_, orjson.dumps(data).decode()))
        return self.sequence

    def publish(
        self, message: Message, *, key: str | None = None, user_id: uuid.UUID | str | None = None
    ) -> None:
        """Add a contract message for the outbox, correlated with the auction (the saga)."""
        key = key or str(self.auction_id)
        envelope = message_envelope(
            message,
            source=SOURCE,
            key=key,
            correlation_id=str(self.auction_id),
            user_id=user_id,
        )
        self.messages.append(Outgoing(message.TOPIC, key, envelope))

    def notifications(self) -> list[str]:
        """The NOTIFY payloads for the stream, in order: the events themselves, as many
        per notification as fit (an event too big for one is named only, and its
        listeners read it from the table)."""
        payloads: list[str] = []
        head = f'{{"a":"{self.auction_id}","e":['
        chunk: list[str] = []
        size = len(head) + 2
        for event in self.events:
            item = f'[{event.sequence},"{event.type}",{event.data}]'
            item_size = len(item.encode()) + 1
            if len(head) + 2 + item_size > NOTIFY_LIMIT:
                if chunk:
                    payloads.append(head + ",".join(chunk) + "]}")
                    chunk, size = [], len(head) + 2
                payloads.append(f'{{"a":"{self.auction_id}","l":{event.sequence}}}')
                continue
            if size + item_size > NOTIFY_LIMIT:
                payloads.append(head + ",".join(chunk) + "]}")
                chunk, size = [], len(head) + 2
            chunk.append(item)
            size += item_size
        if chunk:
            payloads.append(head + ",".join(chunk) + "]}")
        return payloads

    async def write(self, session: AsyncSession) -> None:
        await repository.append(
            session,
            self.auction_id,
            events=self.events,
            messages=self.messages,
            stream_payloads=self.notifications(),
            now=self.now,
        )


def _event_fields(state: AuctionSnapshot, now: datetime) -> dict[str, Any]:
    """The fields every auction event carries."""
    return {
        "auction_id": state.id,
        "seller_id": state.seller_id,
        "status": state.status,
        "currency": state.currency,
        "current_price": state.current_price,
        "ends_at": state.ends_at,
        "occurred_at": now,
    }


# --- reading --------------------------------------------------------------------------


def may_see_secrets(viewer: Principal | None, seller_id: uuid.UUID) -> bool:
    return viewer is not None and (viewer.subject == str(seller_id) or viewer.has_any(STAFF))


# AuctionRead's fields that are not the auction row's own columns.
_DERIVED_FIELDS = frozenset({"reserve_met", "reserve_price", "bidder_standing"})


def auction_read(
    auction: Auction, viewer: Principal | None, *, standing: BidderStanding | None = None
) -> AuctionRead:
    fields: dict[str, Any] = {
        name: getattr(auction, name)
        for name in AuctionRead.model_fields
        if name not in _DERIVED_FIELDS
    }
    fields["reserve_met"] = rules.reserve_met(auction.reserve_price, auction.current_price)
    if may_see_secrets(viewer, auction.seller_id):
        fields["reserve_price"] = auction.reserve_price
    if standing is not None:
        fields["bidder_standing"] = standing
    return AuctionRead(**fields)


def bid_read(bid: Bid, viewer: Principal | None) -> BidRead:
    read = BidRead(
        id=bid.id,
        auction_id=bid.auction_id,
        bidder_id=bid.bidder_id,
        amount=bid.amount,
        auto=bid.auto,
        created_at=bid.created_at,
    )
    if may_see_secrets(viewer, bid.bidder_id):
        read.max_amount = bid.max_amount
    return read


async def get_auction(
    session: AsyncSession, auction_id: uuid.UUID, viewer: Principal | None
) -> AuctionRead:
    auction = await repository.get_auction(session, auction_id)
    if auction is None:
        raise AuctionNotFound()
    return auction_read(auction, viewer)


async def list_auctions(
    session: AsyncSession,
    page: PageParams,
    viewer: Principal | None,
    *,
    status: str | None,
    seller_id: uuid.UUID | None,
    bidder_id: uuid.UUID | None = None,
) -> AuctionPage:
    """Auctions, newest first; ``bidder_id``: those that user bid on, each with where the
    bidder stands (a user may ask about themselves only; support and admins about anyone)."""
    if bidder_id is not None and not may_see_secrets(viewer, bidder_id):
        raise BidderFilterForbidden()
    after = None
    if page.cursor:
        created_at, last_id = decode_cursor(page.cursor, 2)
        after = (cursor_part(datetime.fromisoformat, created_at), cursor_part(uuid.UUID, last_id))
    found = await repository.list_auctions(
        session,
        limit=page.limit + 1,
        status=status,
        seller_id=seller_id,
        after=after,
        bidder_id=bidder_id,
    )
    items = found[: page.limit]
    next_cursor = None
    if len(found) > page.limit:
        next_cursor = encode_cursor(items[-1].created_at.isoformat(), str(items[-1].id))
    if bidder_id is None:
        return AuctionPage(items=[auction_read(a, viewer) for a in items], next_cursor=next_cursor)
    bids = await repository.bids_of_bidder(session, bidder_id, [a.id for a in items])
    return AuctionPage(
        items=[
            auction_read(a, viewer, standing=_standing(a, bidder_id, bids.get(a.id))) for a in items
        ],
        next_cursor=next_cursor,
    )


def _standing(
    auction: Auction, bidder_id: uuid.UUID, bids: repository.BidderBids | None
) -> BidderStanding | None:
    if bids is None:
        return None  # the bids were read a moment after the list: cannot be, but be safe
    return BidderStanding(
        bidder_id=bidder_id,
        best_amount=bids.best_amount,
        bids=bids.bids,
        # The price is always the leader's last bid, so the leader holds the highest bid.
        leading=auction.leader_id == bidder_id,
        last_bid_at=bids.last_bid_at,
    )


async def list_bids(
    session: AsyncSession, auction_id: uuid.UUID, page: PageParams, viewer: Principal | None
) -> BidPage:
    if await repository.get_auction(session, auction_id) is None:
        raise AuctionNotFound()
    before = None
    if page.cursor:
        (sequence,) = decode_cursor(page.cursor, 1)
        before = cursor_part(int, sequence)
    found = await repository.list_bids(
        session, auction_id, limit=page.limit + 1, before_sequence=before
    )
    items = found[: page.limit]
    next_cursor = encode_cursor(items[-1].sequence) if len(found) > page.limit else None
    return BidPage(items=[bid_read(bid, viewer) for bid in items], next_cursor=next_cursor)


# --- creating -------------------------------------------------------------------------


def check_new_auction(data: AuctionCreate, now: datetime) -> datetime:
    """The rules a schema cannot express; returns the effective ``starts_at``."""
    errors: list[dict[str, Any]] = []
    starts_at = data.starts_at or now
    if starts_at < now - STARTS_AT_TOLERANCE:
        errors.append({"field": "starts_at", "message": "must not be in the past"})
    starts_at = max(starts_at, now)
    if data.ends_at <= now:
        errors.append({"field": "ends_at", "message": "must be in the future"})
    elif data.ends_at <= starts_at:
        errors.append({"field": "ends_at", "message": "must be after starts_at"})
    elif data.ends_at - starts_at > MAX_DURATION:
        errors.append({"field": "ends_at", "message": "at most 30 days after starts_at"})
    if data.buy_now_price is not None:
        if data.buy_now_price < data.starting_price:
            errors.append({"field": "buy_now_price", "message": "must be ≥ starting_price"})
        elif data.reserve_price is not None and data.buy_now_price < data.reserve_price:
            errors.append({"field": "buy_now_price", "message": "must be ≥ reserve_price"})
    if errors:
        raise ValidationFailed("The auction is not valid", errors=errors)
    return starts_at


async def create_auction(
    session: AsyncSession, seller: Principal, data: AuctionCreate, *, now: datetime
) -> AuctionRead:
    starts_at = check_new_auction(data, now)
    auction = await repository.add_auction(
        session,
        Auction(
            id=uuid.uuid4(),
            seller_id=uuid.UUID(seller.subject),
            title=data.title,
            description=data.description,
            currency=data.currency,
            starting_price=data.starting_price,
            min_increment=data.min_increment,
            reserve_price=data.reserve_price,
            buy_now_price=data.buy_now_price,
            starts_at=starts_at,
            ends_at=data.ends_at.astimezone(UTC),
            soft_close_seconds=data.soft_close_seconds,
            max_extensions=data.max_extensions,
            extensions=0,
            status="open" if starts_at <= now else "scheduled",
            bid_count=0,
            sequence=0,
            settlement_sends=0,
            created_at=now,
            updated_at=now,
        ),
    )
    state = AuctionSnapshot.of(auction)
    news = Announcements(state, now)
    news.publish(
        AuctionCreated(
            **_event_fields(state, now), title=auction.title, starting_price=auction.starting_price
        ),
        user_id=seller.subject,
    )
    await news.write(session)
    return auction_read(auction, seller)


# --- bidding --------------------------------------------------------------------------


def bidding_state(auction: AuctionSnapshot) -> rules.BiddingState:
    return rules.BiddingState(
        starting_price=auction.starting_price,
        min_increment=auction.min_increment,
        current_price=auction.current_price,
        leader_id=auction.leader_id,
        leader_max=auction.leader_max,
        second_max=auction.second_max,
    )


@dataclass(frozen=True, slots=True)
class BidAnswer:
    """What the bid route answers: the body is JSON, byte for byte the first answer again
    when ``replayed`` (a repeated Idempotency-Key)."""

    status_code: int
    body: bytes
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class BidRequest:
    bidder_id: uuid.UUID
    data: BidCreate
    claim: repository.KeyClaim | None


def bid_request(
    bidder: Principal, auction_id: uuid.UUID, data: BidCreate, idempotency_key: str | None
) -> BidRequest:
    """Check what needs no auction and name the request's Idempotency-Key the way
    kit.idempotency does (same scope per operation, same fingerprint of the body)."""
    if data.max_amount is not None and data.max_amount < data.amount:
        raise ValidationFailed(
            "max_amount is below amount",
            errors=[{"field": "max_amount", "message": "must be ≥ amount"}],
        )
    claim = None
    if idempotency_key is not None:
        claim = repository.KeyClaim(
            principal=bidder.subject,
            scope=f"auctions.bid:{auction_id}",
            key=idempotency_key,
            request_hash=request_fingerprint(data),
        )
    return BidRequest(uuid.UUID(bidder.subject), data, claim)


def replay(claim: repository.KeyClaim, stored: repository.StoredAnswer) -> BidAnswer:
    """The answer given before for this key; the key with another body is refused."""
    if stored.request_hash != claim.request_hash:
        raise IdempotencyKeyReused()
    return BidAnswer(stored.status_code, stored.body.encode(), replayed=True)


class BidBatch:
    """Bids on one auction decided one after another, each on the state the previous ones
    left, to be written together in one statement (bidding.py feeds it). Each accepted
    bid brings its automatic bid (if any), its stream events, its outbox messages and, for
    a request with an Idempotency-Key, the answer to keep with the key."""

    def __init__(self, auction: AuctionSnapshot, now: datetime) -> None:
        self.before = auction
        self.state = replace(auction, updated_at=now)
        self.now = now
        self.news = Announcements(auction, now)
        self.bids: list[NewBid] = []
        self.claims: list[tuple[repository.KeyClaim, str]] = []

    @property
    def changed(self) -> bool:
        return bool(self.bids)

    def place(self, bidder_id: uuid.UUID, data: BidCreate) -> bytes:
        """Accept a bid on the current state and return the answer (BidPlaced as JSON), or
        raise the refusal."""
        auction, now, news = self.state, self.now, self.news
        if auction.seller_id == bidder_id:
            raise OwnAuction()
        if not rules.accepts_bids(auction.status, auction.starts_at, auction.ends_at, now):
            raise AuctionNotOpen()
        outcome = rules.place_bid(bidding_state(auction), bidder_id, data.amount, data.max_amount)
        state = auction
        if state.status == "scheduled":
            # Its start has come and the scheduler has not opened it yet: this bid does.
            state = replace(state, status="open")
            news.stream("opened", state)
            news.publish(AuctionOpened(**_event_fields(state, now)))
        own: NewBid | None = None
        for placed in outcome.bids:
            method = (
                data.payment_method_id
                if placed.bidder_id == bidder_id
                else auction.leader_payment_method_id
            )
            assert method is not None, "a leader always has a payment method"
            state = replace(state, current_price=placed.amount, bid_count=state.bid_count + 1)
            bid = NewBid(
                id=uuid.uuid4(),
                sequence=news.sequence + 1,
                bidder_id=placed.bidder_id,
                amount=placed.amount,
                max_amount=placed.max_amount,
                auto=placed.auto,
                payment_method_id=method,
            )
            own = own or bid
            self.bids.append(bid)
            news.stream(
                "bid",
                state,
                bid={
                    "id": str(bid.id),
                    "bidder_id": str(bid.bidder_id),
                    "amount": bid.amount,
                    "auto": bid.auto,
                    "created_at": rfc3339(now),
                },
            )
            news.publish(
                BidAccepted(
                    **_event_fields(state, now),
                    bid_id=bid.id,
                    bidder_id=bid.bidder_id,
                    amount=bid.amount,
                    auto=bid.auto,
                    sequence=bid.sequence,
                ),
                user_id=bid.bidder_id,
            )
        assert own is not None
        after = outcome.state
        state = replace(
            state,
            leader_id=after.leader_id,
            leader_max=after.leader_max,
            second_max=after.second_max,
            leader_payment_method_id=data.payment_method_id
            if after.leader_id == bidder_id
            else auction.leader_payment_method_id,
        )
        new_end = rules.soft_close_end(
            ends_at=state.ends_at,
            bid_time=now,
            soft_close_seconds=state.soft_close_seconds,
            max_extensions=state.max_extensions,
            extensions=state.extensions,
        )
        if new_end is not None:
            state = replace(state, ends_at=new_end, extensions=state.extensions + 1)
            news.stream("extended", state)
            news.publish(AuctionExtended(**_event_fields(state, now), extensions=state.extensions))
        self.state = replace(state, sequence=news.sequence)
        # BidPlaced's fields, in its order (the route documents the shape with the model).
        return orjson.dumps(
            {
                "id": str(own.id),
                "auction_id": str(auction.id),
                "bidder_id": str(bidder_id),
                "amount": own.amount,
                "auto": False,
                "created_at": rfc3339(now),
                "max_amount": own.max_amount,
                "leading": outcome.leading,
                "current_price": self.state.current_price,
            }
        )

    def keep_answer(self, claim: repository.KeyClaim, answer: bytes) -> None:
        self.claims.append((claim, answer.decode()))

    async def write(self, conn: asyncpg.Connection) -> bool:
        """Write everything if the auction is still as it was read; False if it changed
        (or one of the keys was used meanwhile), and then nothing was written."""
        return await repository.write_bids(
            conn,
            before=self.before,
            after=self.state,
            bids=self.bids,
            events=self.news.events,
            messages=self.news.messages,
            stream_payloads=self.news.notifications(),
            now=self.now,
            claims=self.claims,
            lifetime=KEY_LIFETIME,
        )


async def buy_now(
    session: AsyncSession,
    buyer: Principal,
    auction_id: uuid.UUID,
    data: BuyNow,
    *,
    policy: saga.SettlementPolicy,
) -> AuctionRead:
    """Close the auction at its buy-now price with the caller as the one to charge."""
    auction = await repository.get_auction(session, auction_id, for_update=True)
    if auction is None:
        raise AuctionNotFound()
    buyer_id = uuid.UUID(buyer.subject)
    if auction.seller_id == buyer_id:
        raise OwnAuction()
    now = utcnow()
    if not rules.accepts_bids(auction.status, auction.starts_at, auction.ends_at, now):
        raise AuctionNotOpen()
    if auction.buy_now_price is None or not rules.buy_now_available(
        auction.buy_now_price, auction.current_price
    ):
        raise BuyNowUnavailable()
    news = Announcements(AuctionSnapshot.of(auction), now)
    auction.status = "closing"
    auction.updated_at = now
    state = AuctionSnapshot.of(auction)
    news.stream("closed", state, buy_now=True)
    news.publish(
        AuctionClosed(
            **_event_fields(state, now),
            winner_id=buyer_id,
            final_price=auction.buy_now_price,
            reserve_met=True,
        )
    )
    await _start_attempt(
        session,
        auction,
        saga.Candidate(buyer_id, auction.buy_now_price, data.payment_method_id),
        news,
        policy,
    )
    await _save(session, auction, news)
    return auction_read(auction, buyer)


# --- cancelling -----------------------------------------------------------------------


async def cancel_auction(
    session: AsyncSession, caller: Principal, auction_id: uuid.UUID, data: CancelAuction
) -> AuctionRead:
    """The seller cancels while nobody has bid; support (or a service acting for it)
    cancels any auction not yet settled or unsold."""
    auction = await repository.get_auction(session, auction_id, for_update=True)
    if auction is None:
        raise AuctionNotFound()
    staff = caller.has_any(STAFF) or caller.has_any({ROLE_SERVICE})
    if not staff:
        if caller.subject != str(auction.seller_id):
            raise NotAuctionSeller()
        if auction.bid_count > 0 and auction.status in ("scheduled", "open"):
            raise AuctionHasBids()
    if auction.status == "cancelled":
        return auction_read(auction, caller)
    allowed = ("scheduled", "open", "closing") if staff else ("scheduled", "open")
    if auction.status not in allowed:
        raise AuctionNotCancellable(f"The auction is {auction.status}")
    now = utcnow()
    news = Announcements(AuctionSnapshot.of(auction), now)
    if auction.status == "closing" and auction.settlement_payment_id is not None:
        attempt = await repository.get_attempt(session, auction.settlement_payment_id)
        if attempt is not None:
            attempt.status = saga.AttemptStatus.CANCELLED
            attempt.updated_at = now
        news.publish(
            payments.CancelPayment(
                payment_id=auction.settlement_payment_id, reason="auction_cancelled"
            ),
            key=str(auction.settlement_payment_id),
        )
    reason = data.reason or ("support_action" if staff else "seller_request")
    auction.status = "cancelled"
    auction.status_reason = reason[:64]
    _end_settlement(auction)
    auction.updated_at = now
    state = AuctionSnapshot.of(auction)
    news.stream("cancelled", state)
    news.publish(
        AuctionCancelled(**_event_fields(state, now), cancelled_by=caller.subject, reason=reason),
        user_id=caller.subject,
    )
    await _save(session, auction, news)
    return auction_read(auction, caller)


# --- opening and closing (the scheduler, in every replica) ----------------------------


async def open_due(session: AsyncSession, *, now: datetime, limit: int = 100) -> int:
    """Open scheduled auctions whose start has come (ones another replica holds are left
    to it). Returns how many."""
    due = await repository.due_to_open(session, now, limit)
    for auction in due:
        news = Announcements(AuctionSnapshot.of(auction), now)
        auction.status = "open"
        auction.updated_at = now
        state = AuctionSnapshot.of(auction)
        news.stream("opened", state)
        news.publish(AuctionOpened(**_event_fields(state, now)))
        await _save(session, auction, news)
    return len(due)


async def close_due(
    session: AsyncSession,
    *,
    now: datetime,
    policy: saga.SettlementPolicy,
    limit: int = 100,
    overdue_by: timedelta | None = None,
) -> int:
    """Close auctions whose end has come, each exactly once: the status moves from open
    to closing under the row lock, and a replica that got the lock second finds it
    closed. Rows another transaction holds are skipped, unless ``overdue_by`` is given:
    then only auctions that far past their end are taken, waiting for their locks.
    Returns how many this call closed."""
    if overdue_by is None:
        due = await repository.due_to_close(session, now, limit)
    else:
        due = await repository.due_to_close(session, now - overdue_by, limit, skip_locked=False)
    for auction in due:
        await close_auction(session, auction, now=now, policy=policy)
    return len(due)


async def close_auction(
    session: AsyncSession, auction: Auction, *, now: datetime, policy: saga.SettlementPolicy
) -> None:
    """open → closing, then: unsold (no bids, reserve not met) or charge the leader."""
    news = Announcements(AuctionSnapshot.of(auction), now)
    met = rules.reserve_met(auction.reserve_price, auction.current_price)
    auction.status = "closing"
    auction.updated_at = now
    state = AuctionSnapshot.of(auction)
    news.stream("closed", state)
    news.publish(
        AuctionClosed(
            **_event_fields(state, now),
            winner_id=auction.leader_id if met else None,
            final_price=auction.current_price if met else None,
            reserve_met=met,
        )
    )
    if auction.bid_count == 0 or auction.leader_id is None:
        _mark_unsold(session, auction, saga.UnsoldReason.NO_BIDS, news)
    elif not met:
        _mark_unsold(session, auction, saga.UnsoldReason.RESERVE_NOT_MET, news)
    else:
        assert auction.current_price is not None and auction.leader_payment_method_id is not None
        leader = saga.Candidate(
            auction.leader_id, auction.current_price, auction.leader_payment_method_id
        )
        await _start_attempt(session, auction, leader, news, policy)
    await _save(session, auction, news)


# --- settlement -----------------------------------------------------------------------


async def record_payment_outcome(
    session: AsyncSession,
    outcome: payments.PaymentOutcome,
    trigger: saga.Trigger,
    *,
    policy: saga.SettlementPolicy,
    failure_code: str | None = None,
) -> None:
    """Move the settlement saga on a payment's outcome (handlers.py calls this)."""
    if outcome.reference_type != "auction":
        return
    auction = await repository.get_auction(session, outcome.reference_id, for_update=True)
    attempt = await repository.get_attempt(session, outcome.payment_id)
    if auction is None or attempt is None or attempt.auction_id != auction.id:
        return  # not a payment this service asked for
    now = utcnow()
    standing = saga.standing_of(
        attempt.payment_id,
        status=auction.status,
        awaited_payment_id=auction.settlement_payment_id,
        settled_payment_id=auction.payment_id,
    )
    action = saga.decide(
        trigger,
        standing=standing,
        sends=auction.settlement_sends,
        policy=policy,
        attempt_status=attempt.status,
    )
    if action is saga.Action.IGNORE:
        if trigger is saga.Trigger.FAILED and attempt.failure_code is None:
            attempt.failure_code = failure_code
            attempt.updated_at = now
        return
    news = Announcements(AuctionSnapshot.of(auction), now)
    attempt.status = saga.ATTEMPT_STATUS_AFTER[action]
    attempt.updated_at = now
    if action is saga.Action.SETTLE:
        auction.status = "settled"
        auction.winner_id = attempt.bidder_id
        auction.final_price = attempt.amount
        auction.payment_id = attempt.payment_id
        _end_settlement(auction)
        auction.updated_at = now
        state = AuctionSnapshot.of(auction)
        news.stream("settled", state)
        news.publish(
            AuctionSettled(
                **_event_fields(state, now),
                winner_id=attempt.bidder_id,
                final_price=attempt.amount,
                payment_id=attempt.payment_id,
            ),
            user_id=attempt.bidder_id,
        )
        metrics.count_on_commit(session, "settled", _settled_reason(attempt))
    elif action is saga.Action.NEXT_BIDDER:
        attempt.failure_code = failure_code
        await _charge_next_bidder(session, auction, news, policy)
    elif action is saga.Action.WAIT_LONGER:
        auction.settlement_deadline = now + policy.processing_timeout
    elif action is saga.Action.REFUND:
        news.publish(
            payments.CancelPayment(payment_id=attempt.payment_id, reason="settlement_superseded"),
            key=str(attempt.payment_id),
        )
    await _save(session, auction, news)


async def chase_settlements(
    session: AsyncSession, *, now: datetime, policy: saga.SettlementPolicy, limit: int = 100
) -> int:
    """Settlement steps past their deadline: send the ChargePayment again, or give up on
    that bidder after ``max_sends`` and move to the next. Returns how many it handled."""
    due = await repository.settlements_past_deadline(session, now, limit)
    for auction in due:
        payment_id = auction.settlement_payment_id
        attempt = None if payment_id is None else await repository.get_attempt(session, payment_id)
        news = Announcements(AuctionSnapshot.of(auction), now)
        if attempt is None:
            await _charge_next_bidder(session, auction, news, policy)
        else:
            action = saga.decide(
                saga.Trigger.DEADLINE,
                standing=saga.Standing.AWAITED,
                sends=auction.settlement_sends,
                policy=policy,
            )
            if action is saga.Action.RESEND:
                auction.settlement_sends += 1
                auction.settlement_deadline = now + policy.charge_timeout
                news.publish(_charge_of(attempt, auction.currency), key=str(attempt.payment_id))
            else:
                attempt.status = saga.AttemptStatus.ABANDONED
                attempt.failure_code = "timeout"
                attempt.updated_at = now
                news.publish(
                    payments.CancelPayment(
                        payment_id=attempt.payment_id, reason="settlement_timeout"
                    ),
                    key=str(attempt.payment_id),
                )
                await _charge_next_bidder(session, auction, news, policy)
        auction.updated_at = now
        await _save(session, auction, news)
    return len(due)


async def retry_settlement(
    session: AsyncSession,
    caller: Principal,
    auction_id: uuid.UUID,
    data: RetrySettlement,
    *,
    policy: saga.SettlementPolicy,
) -> AuctionRead:
    """Support's retry (saga.retry_move): a new settlement round for an auction unsold
    because no bidder could pay, or for one whose awaited charge is past its deadline
    (that charge is given up and cancelled first). The round charges the eligible
    bidders again, highest first, each with the payment method they bid with."""
    auction = await repository.get_auction(session, auction_id, for_update=True)
    if auction is None:
        raise AuctionNotFound()
    now = utcnow()
    awaited = None
    if auction.settlement_payment_id is not None:
        awaited = await repository.get_attempt(session, auction.settlement_payment_id)
    move = saga.retry_move(
        status=auction.status,
        status_reason=auction.status_reason,
        awaited_since=None if awaited is None else awaited.created_at,
        now=now,
        policy=policy,
    )
    if move is saga.RetryMove.REFUSE:
        raise SettlementNotRetryable(_not_retryable_detail(auction))
    news = Announcements(AuctionSnapshot.of(auction), now)
    retried_because = auction.status_reason or "charge_overdue"
    if move is saga.RetryMove.RESTART and awaited is not None:
        awaited.status = saga.AttemptStatus.ABANDONED
        awaited.failure_code = "settlement_retried"
        awaited.updated_at = now
        news.publish(
            payments.CancelPayment(payment_id=awaited.payment_id, reason="settlement_retried"),
            key=str(awaited.payment_id),
        )
    attempts = await repository.attempts_of(session, auction.id)
    new_round = saga.current_round(attempt.round for attempt in attempts) + 1
    auction.status = "closing"
    auction.status_reason = None
    auction.updated_at = now
    news.stream(
        "settlement_retried", AuctionSnapshot.of(auction), round=new_round, reason=retried_because
    )
    metrics.count_on_commit(session, "retried", retried_because)
    await _charge_next_bidder(
        session,
        auction,
        news,
        policy,
        new_round=new_round,
        retry_reason=data.reason,
        attempts=attempts,
    )
    await _save(session, auction, news)
    return auction_read(auction, caller)


def _not_retryable_detail(auction: Auction) -> str:
    if auction.status == "unsold":
        return f"The auction is unsold ({auction.status_reason}): there is nobody to charge"
    if auction.status == "closing":
        return "The auction's settlement is under way and not past its deadline yet"
    return f"The auction is {auction.status}"


async def _charge_next_bidder(
    session: AsyncSession,
    auction: Auction,
    news: Announcements,
    policy: saga.SettlementPolicy,
    *,
    new_round: int | None = None,
    retry_reason: str | None = None,
    attempts: list[SettlementAttempt] | None = None,
) -> None:
    """Charge the highest eligible bidder not tried in this round (``new_round``: start
    that round), or mark the auction unsold when nobody is left (``attempts``: the
    auction's attempts, when the caller has read them already)."""
    if attempts is None:
        attempts = await repository.attempts_of(session, auction.id)
    round_ = new_round or saga.current_round(attempt.round for attempt in attempts)
    candidate = saga.next_candidate(
        saga.round_candidates(
            await repository.best_bid_per_bidder(session, auction.id),
            [
                saga.Candidate(attempt.bidder_id, attempt.amount, attempt.payment_method_id)
                for attempt in attempts
            ],
        ),
        tried={attempt.bidder_id for attempt in attempts if attempt.round == round_},
        reserve_price=auction.reserve_price,
    )
    if candidate is None:
        _mark_unsold(session, auction, saga.UnsoldReason.NO_PAYABLE_BIDDER, news)
    else:
        await _start_attempt(
            session,
            auction,
            candidate,
            news,
            policy,
            number=len(attempts) + 1,
            round_=round_,
            retry_reason=retry_reason,
        )


async def _start_attempt(
    session: AsyncSession,
    auction: Auction,
    candidate: saga.Candidate,
    news: Announcements,
    policy: saga.SettlementPolicy,
    *,
    number: int | None = None,
    round_: int = 1,
    retry_reason: str | None = None,
) -> None:
    if number is None:
        number = len(await repository.attempts_of(session, auction.id)) + 1
    attempt = SettlementAttempt(
        payment_id=uuid.uuid4(),
        auction_id=auction.id,
        attempt=number,
        round=round_,
        bidder_id=candidate.bidder_id,
        payment_method_id=candidate.payment_method_id,
        amount=candidate.amount,
        status=saga.AttemptStatus.CHARGING,
        created_at=news.now,
        updated_at=news.now,
    )
    await repository.add_attempt(session, attempt)
    auction.settlement_payment_id = attempt.payment_id
    auction.settlement_sends = 1
    auction.settlement_deadline = news.now + policy.charge_timeout
    news.publish(
        SettlementAttempted(
            **_event_fields(AuctionSnapshot.of(auction), news.now),
            bidder_id=candidate.bidder_id,
            amount=candidate.amount,
            payment_id=attempt.payment_id,
            attempt=number,
            round=round_,
            retry_reason=retry_reason,
        ),
        user_id=candidate.bidder_id,
    )
    news.publish(
        _charge_of(attempt, auction.currency),
        key=str(attempt.payment_id),
        user_id=candidate.bidder_id,
    )


def _charge_of(attempt: SettlementAttempt, currency: str) -> payments.ChargePayment:
    return payments.ChargePayment(
        payment_id=attempt.payment_id,
        user_id=attempt.bidder_id,
        payment_method_id=attempt.payment_method_id,
        amount=attempt.amount,
        currency=currency,
        reference_type="auction",
        reference_id=attempt.auction_id,
    )


def _mark_unsold(
    session: AsyncSession, auction: Auction, reason: saga.UnsoldReason, news: Announcements
) -> None:
    auction.status = "unsold"
    auction.status_reason = reason.value
    _end_settlement(auction)
    auction.updated_at = news.now
    state = AuctionSnapshot.of(auction)
    news.stream("unsold", state)
    news.publish(AuctionUnsold(**_event_fields(state, news.now), reason=reason.value))
    metrics.count_on_commit(session, "unsold", reason.value)


def _settled_reason(attempt: SettlementAttempt) -> str:
    if attempt.round > 1:
        return "retry"
    return "winner" if attempt.attempt == 1 else "second_chance"


def _end_settlement(auction: Auction) -> None:
    auction.settlement_payment_id = None
    auction.settlement_deadline = None


async def _save(session: AsyncSession, auction: Auction, news: Announcements) -> None:
    """Write the auction's changes and what they announce, advancing its stream sequence."""
    auction.sequence = news.sequence
    await session.flush()
    await news.write(session)
