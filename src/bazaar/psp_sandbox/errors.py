"""The sandbox's refusals, answered as problem+json by the kit's one handler."""

from __future__ import annotations

from typing import Any

from bazaar.kit.errors import Conflict, DomainError, NotFound, ValidationFailed


class InvalidApiKey(DomainError):
    status = 401
    code = "invalid_api_key"
    title = "A valid API key is required (Authorization: Bearer sk_test_...)"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="psp-sandbox"'}


class IdempotencyKeyRequired(DomainError):
    status = 400
    code = "idempotency_key_required"
    title = "An Idempotency-Key header of 1-255 printable ASCII characters is required"


class InvalidCardNumber(ValidationFailed):
    code = "invalid_card_number"
    title = "The card number is not valid"

    def __init__(self) -> None:
        super().__init__(
            "The card number fails the Luhn check",
            errors=[{"field": "card_number", "message": "fails the Luhn check", "type": "luhn"}],
        )


class CardExpired(ValidationFailed):
    code = "expired_card"
    title = "The card has expired"

    def __init__(self) -> None:
        super().__init__(
            "The card's expiry month is in the past",
            errors=[{"field": "exp_year", "message": "the card has expired", "type": "expired"}],
        )


class TokenNotFound(ValidationFailed):
    code = "token_not_found"
    title = "No such card token"

    def __init__(self) -> None:
        super().__init__(
            "The token was not issued by this provider",
            errors=[{"field": "token", "message": "unknown token", "type": "not_found"}],
        )


class ChargeNotFound(NotFound):
    code = "charge_not_found"
    title = "No such charge"


class ChargeNotRefundable(Conflict):
    code = "charge_not_refundable"
    title = "Only a succeeded charge can be refunded"


class ChargeAlreadyRefunded(Conflict):
    code = "charge_already_refunded"
    title = "The charge has been refunded in full"


class RefundExceedsCharge(Conflict):
    code = "amount_exceeds_refundable"
    title = "The refund is larger than what is left of the charge"

    def __init__(self, refundable_amount: int, **extra: Any) -> None:
        super().__init__(
            f"At most {refundable_amount} can still be refunded",
            refundable_amount=refundable_amount,
            **extra,
        )


class ProcessingError(DomainError):
    """The provider's own failure, as card 4000 0000 0000 0119 plays it: retry the same key."""

    status = 500
    code = "processing_error"
    title = "The provider failed to process the request"


class LedgerCorrupt(Exception):
    """A ledger line other than a torn last one cannot be read: refuse to start."""


class LedgerInUse(Exception):
    """Another process holds the ledger: one sandbox process per data directory."""
