"""Auction events on ``bazaar.auctions``: bids, extensions, close and settlement."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from bazaar.contracts.base import Message

TOPIC = "bazaar.auctions"

AuctionStatus = Literal["scheduled", "open", "closing", "settled", "unsold", "cancelled"]


class AuctionEvent(Message):
    TYPE = "bazaar.auctions.auction"
    TOPIC = TOPIC

    auction_id: UUID
    seller_id: UUID
    status: AuctionStatus
    currency: str
    current_price: int | None
    ends_at: datetime
    occurred_at: datetime


class AuctionCreated(AuctionEvent):
    TYPE = "bazaar.auctions.auction.created"

    title: str
    starting_price: int


class AuctionOpened(AuctionEvent):
    TYPE = "bazaar.auctions.auction.opened"


class BidAccepted(AuctionEvent):
    """``auto``: placed by the platform for a proxy bidder. The bidder's maximum is secret
    and never published."""

    TYPE = "bazaar.auctions.bid.accepted"

    bid_id: UUID
    bidder_id: UUID
    amount: int
    auto: bool
    sequence: int


class AuctionExtended(AuctionEvent):
    TYPE = "bazaar.auctions.auction.extended"

    extensions: int


class AuctionClosed(AuctionEvent):
    TYPE = "bazaar.auctions.auction.closed"

    winner_id: UUID | None
    final_price: int | None
    reserve_met: bool


class SettlementAttempted(AuctionEvent):
    """The settlement saga asked payments to charge a candidate winner. ``round``: 1, and
    one more for each retry support asked for; ``retry_reason``: that retry's reason, on
    the first attempt of its round."""

    TYPE = "bazaar.auctions.settlement.attempted"

    bidder_id: UUID
    amount: int
    payment_id: UUID
    attempt: int
    round: int = 1
    retry_reason: str | None = None


class AuctionSettled(AuctionEvent):
    TYPE = "bazaar.auctions.auction.settled"

    winner_id: UUID
    final_price: int
    payment_id: UUID


class AuctionUnsold(AuctionEvent):
    TYPE = "bazaar.auctions.auction.unsold"

    reason: Literal["no_bids", "reserve_not_met", "no_payable_bidder"]


class AuctionCancelled(AuctionEvent):
    TYPE = "bazaar.auctions.auction.cancelled"

    cancelled_by: str
    reason: str
