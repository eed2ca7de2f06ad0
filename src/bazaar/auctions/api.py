"""Auction routes (``/api/auctions``): parse, call the service, shape the answer."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, status
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bazaar.auctions import metrics, repository, service
from bazaar.auctions.bidding import BidDesk
from bazaar.auctions.errors import AuctionNotFound, InvalidPaymentMethod
from bazaar.auctions.saga import SettlementPolicy
from bazaar.auctions.schemas import (
    AuctionCreate,
    AuctionPage,
    AuctionRead,
    BidCreate,
    BidPage,
    BidPlaced,
    BuyNow,
    CancelAuction,
    RetrySettlement,
    Status,
)
from bazaar.auctions.stream import StreamHub, event_stream
from bazaar.kit.errors import DomainError
from bazaar.kit.http import DbSession, OptionalPrincipal, require_roles
from bazaar.kit.idempotency import IdempotencyKey
from bazaar.kit.pagination import Page
from bazaar.kit.payment_methods import PaymentMethodCheck
from bazaar.kit.tokens import Principal

router = APIRouter(prefix="/api/auctions", tags=["auctions"])

Seller = Annotated[Principal, Depends(require_roles("seller"))]
Customer = Annotated[Principal, Depends(require_roles("customer"))]
# Sellers cancel their own (while nobody bid); support, admins and services any.
Canceller = Annotated[Principal, Depends(require_roles("seller", "support", "admin", "service"))]
# Support's corrective actions come as the support service's client (role ``service``).
Staff = Annotated[Principal, Depends(require_roles("support", "admin", "service"))]


@dataclass(frozen=True)
class AuctionsContext:
    """What the routes need besides the session; built once in the lifespan."""

    sessions: async_sessionmaker[AsyncSession]
    # Where bids queue per auction and are written in batches (bidding.py).
    bids: BidDesk
    policy: SettlementPolicy
    payment_methods: PaymentMethodCheck
    hub: StreamHub
    heartbeat_seconds: float


async def auctions_context(request: Request) -> AuctionsContext:
    context: AuctionsContext = request.app.state.auctions
    return context


Context = Annotated[AuctionsContext, Depends(auctions_context)]


@router.post(
    "",
    response_model=AuctionRead,
    response_model_exclude_unset=True,
    status_code=status.HTTP_201_CREATED,
)
async def create_auction(data: AuctionCreate, seller: Seller, session: DbSession) -> AuctionRead:
    """Put something up for auction; it opens at ``starts_at`` (default now)."""
    return await service.create_auction(session, seller, data, now=service.utcnow())


@router.get("", response_model=AuctionPage, response_model_exclude_unset=True)
async def list_auctions(
    session: DbSession,
    page: Page,
    viewer: OptionalPrincipal,
    status: Status | None = None,
    seller_id: uuid.UUID | None = None,
    bidder_id: Annotated[
        uuid.UUID | None,
        Query(
            description="Only auctions this user bid on, each with ``bidder_standing``: "
            "your own id, or anyone's for support and admins (else 403)"
        ),
    ] = None,
) -> AuctionPage:
    """Auctions, newest first."""
    return await service.list_auctions(
        session, page, viewer, status=status, seller_id=seller_id, bidder_id=bidder_id
    )


@router.get("/{auction_id}", response_model=AuctionRead, response_model_exclude_unset=True)
async def get_auction(
    auction_id: uuid.UUID, session: DbSession, viewer: OptionalPrincipal
) -> AuctionRead:
    """An auction; ``reserve_price`` only to its seller, support and admins."""
    return await service.get_auction(session, auction_id, viewer)


@router.post(
    "/{auction_id}/bids",
    response_model=BidPlaced,
    status_code=status.HTTP_201_CREATED,
)
async def place_bid(
    auction_id: uuid.UUID,
    data: BidCreate,
    bidder: Customer,
    context: Context,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Bid; ``max_amount`` makes the platform bid for you up to it (proxy bidding).
    ``leading`` says whether you lead once the automatic bids (if any) are in."""
    try:
        await _require_own_method(context, bidder, data.payment_method_id)
        request = service.bid_request(bidder, auction_id, data, idempotency_key)
        answer = await context.bids.place(auction_id, request)
    except DomainError as refusal:
        metrics.bid_refused(refusal.code)
        raise
    return Response(
        answer.body,
        status_code=answer.status_code,
        media_type="application/json",
        headers={"Idempotent-Replayed": "true"} if answer.replayed else None,
    )


@router.get("/{auction_id}/bids", response_model=BidPage, response_model_exclude_unset=True)
async def list_bids(
    auction_id: uuid.UUID, session: DbSession, page: Page, viewer: OptionalPrincipal
) -> BidPage:
    """Accepted bids (automatic ones too), newest first; ``max_amount`` only to the bidder,
    support and admins."""
    return await service.list_bids(session, auction_id, page, viewer)


@router.get(
    "/{auction_id}/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}},
)
async def stream(
    auction_id: uuid.UUID,
    context: Context,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    after: Annotated[int | None, Query(ge=0, description="As Last-Event-ID")] = None,
) -> StreamingResponse:
    """Server-Sent Events: ``bid``, ``extended``, ``closed``, ``settled``, ``unsold``,
    ``cancelled`` (and ``opened``, and ``settlement_retried`` when support starts a new
    settlement round), each with the auction's new state; ``id`` is the
    auction's event sequence number. Without ``Last-Event-ID`` the stream starts with a
    ``state`` event; with it, the events missed are sent first."""
    async with context.sessions() as session:
        if await repository.get_auction(session, auction_id) is None:
            raise AuctionNotFound()
    resume_from = after
    if last_event_id is not None and last_event_id.strip().isdigit():
        resume_from = int(last_event_id.strip())
    return StreamingResponse(
        event_stream(
            context.hub,
            context.sessions,
            auction_id,
            last_event_id=resume_from,
            heartbeat_seconds=context.heartbeat_seconds,
        ),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.post(
    "/{auction_id}/buy-now",
    response_model=AuctionRead,
    response_model_exclude_unset=True,
    status_code=status.HTTP_202_ACCEPTED,
)
async def buy_now(
    auction_id: uuid.UUID, data: BuyNow, buyer: Customer, session: DbSession, context: Context
) -> AuctionRead:
    """Close the auction at its buy-now price with you as the winner (charged next), while
    no bid has reached that price."""
    await _require_own_method(context, buyer, data.payment_method_id)
    return await service.buy_now(session, buyer, auction_id, data, policy=context.policy)


@router.post(
    "/{auction_id}/cancel",
    response_model=AuctionRead,
    response_model_exclude_unset=True,
    status_code=status.HTTP_202_ACCEPTED,
)
async def cancel_auction(
    auction_id: uuid.UUID,
    caller: Canceller,
    session: DbSession,
    data: CancelAuction | None = None,
) -> AuctionRead:
    """Cancel: its seller while nobody has bid; support and admins until it is settled."""
    return await service.cancel_auction(session, caller, auction_id, data or CancelAuction())


@router.post(
    "/{auction_id}/settlement/retry",
    response_model=AuctionRead,
    response_model_exclude_unset=True,
    status_code=status.HTTP_202_ACCEPTED,
)
async def retry_settlement(
    auction_id: uuid.UUID,
    caller: Staff,
    session: DbSession,
    context: Context,
    data: RetrySettlement | None = None,
) -> AuctionRead:
    """Support's retry: a new settlement round for an auction unsold because no bidder
    could pay, or whose charge is past its deadline (409 ``settlement_not_retryable``
    otherwise). Every eligible bidder may be charged again, highest first."""
    return await service.retry_settlement(
        session, caller, auction_id, data or RetrySettlement(), policy=context.policy
    )


async def _require_own_method(
    context: AuctionsContext, buyer: Principal, method_id: uuid.UUID
) -> None:
    if not await context.payment_methods.owns(uuid.UUID(buyer.subject), method_id):
        raise InvalidPaymentMethod()
