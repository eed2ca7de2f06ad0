"""The auctions service's refusals, each with its machine ``code`` (API.md, "Auctions")."""

from __future__ import annotations

from bazaar.kit.errors import Conflict, Forbidden, NotFound, ValidationFailed


class AuctionNotFound(NotFound):
    code = "auction_not_found"
    title = "No such auction"


class BidTooLow(Conflict):
    code = "bid_too_low"
    title = "The bid is below the minimum the auction accepts now"


class AuctionNotOpen(Conflict):
    code = "auction_not_open"
    title = "The auction is not open for bids"


class OwnAuction(Forbidden):
    code = "own_auction"
    title = "Sellers cannot bid on or buy their own auction"


class BuyNowUnavailable(Conflict):
    code = "buy_now_unavailable"
    title = "Buy-now is not offered, or a bid has already reached its price"


class AuctionHasBids(Conflict):
    code = "auction_has_bids"
    title = "A seller may cancel an auction only while it has no bid"


class AuctionNotCancellable(Conflict):
    code = "auction_not_cancellable"
    title = "The auction is already over"


class NotAuctionSeller(Forbidden):
    code = "not_auction_seller"
    title = "Only the auction's seller (or support) may do this"


class SettlementNotRetryable(Conflict):
    code = "settlement_not_retryable"
    title = "The auction's settlement cannot be retried now"


class BidderFilterForbidden(Forbidden):
    code = "bidder_filter_forbidden"
    title = "Only support and admins may list the auctions another user bid on"


class InvalidPaymentMethod(ValidationFailed):
    code = "payment_method_invalid"
    title = "The payment method is unknown or not the caller's"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(
            detail,
            errors=[{"field": "payment_method_id", "message": "not one of your payment methods"}],
        )
