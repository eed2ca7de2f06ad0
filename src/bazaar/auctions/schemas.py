"""The auctions service's HTTP shapes (API.md, "Auctions").

Secret fields (an auction's ``reserve_price``, a bid's ``max_amount``) are left *unset*
for callers who may not see them, and the routes answer with ``exclude_unset``, so the
key is absent rather than a misleading ``null``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Description = Annotated[str, StringConstraints(max_length=10_000)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Price = Annotated[
    int, Field(strict=True, gt=0, le=1_000_000_000_000, description="Minor units (1250 = 12.50)")
]
Status = Literal["scheduled", "open", "closing", "settled", "unsold", "cancelled"]


class AuctionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Title
    description: Description = ""
    currency: Currency
    starting_price: Price
    min_increment: Price
    reserve_price: Price | None = Field(
        default=None, description="Secret: the least price the seller sells at"
    )
    buy_now_price: Price | None = None
    starts_at: AwareDatetime | None = Field(default=None, description="Default: now")
    ends_at: AwareDatetime
    soft_close_seconds: Annotated[int, Field(strict=True, ge=0, le=86_400)] = 0
    max_extensions: Annotated[int, Field(strict=True, ge=0, le=100_000)] | None = None


class BidderStanding(BaseModel):
    """Where one bidder stands on an auction (in lists filtered by ``bidder_id``)."""

    bidder_id: uuid.UUID
    best_amount: int = Field(description="The bidder's highest accepted bid, automatic ones too")
    bids: int = Field(description="How many of the auction's bids are the bidder's")
    leading: bool = Field(description="The bidder holds the highest bid now")
    last_bid_at: datetime


class AuctionRead(BaseModel):
    id: uuid.UUID
    seller_id: uuid.UUID
    title: str
    description: str
    currency: str
    starting_price: int
    min_increment: int
    reserve_price: int | None = None
    buy_now_price: int | None
    current_price: int | None
    bid_count: int
    reserve_met: bool
    starts_at: datetime
    ends_at: datetime
    soft_close_seconds: int
    max_extensions: int | None
    extensions: int
    status: Status
    status_reason: str | None
    winner_id: uuid.UUID | None
    final_price: int | None
    payment_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    bidder_standing: BidderStanding | None = Field(
        default=None, description="Only in lists filtered by bidder_id"
    )


class AuctionPage(BaseModel):
    items: list[AuctionRead]
    next_cursor: str | None


class BidCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: Price
    payment_method_id: uuid.UUID
    max_amount: Price | None = Field(
        default=None, description="Secret maximum for proxy bidding (≥ amount); default amount"
    )


class BidRead(BaseModel):
    id: uuid.UUID
    auction_id: uuid.UUID
    bidder_id: uuid.UUID
    amount: int
    auto: bool
    created_at: datetime
    max_amount: int | None = None


class BidPlaced(BidRead):
    """The caller's accepted bid, and whether it leads once the platform's automatic bids
    (if any) are in."""

    leading: bool
    current_price: int


class BidPage(BaseModel):
    items: list[BidRead]
    next_cursor: str | None


class BuyNow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    payment_method_id: uuid.UUID


class RetrySettlement(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] | None = None


class CancelAuction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] | None = None
