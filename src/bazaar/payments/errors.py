"""The payments service's refusals, answered as problem+json by the kit's one handler."""

from __future__ import annotations

from bazaar.kit.errors import NotFound, ServiceUnavailable, ValidationFailed


class PaymentNotFound(NotFound):
    code = "payment_not_found"
    title = "No such payment"


class PaymentMethodNotFound(NotFound):
    code = "payment_method_not_found"
    title = "No such payment method"


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


class PaymentMethodInvalid(ValidationFailed):
    """The method does not exist or was deleted: nothing can be charged to it."""

    code = "payment_method_invalid"
    title = "The payment method cannot be used"

    def __init__(self) -> None:
        super().__init__(
            "No usable payment method with this id",
            errors=[
                {"field": "payment_method_id", "message": "unknown or deleted", "type": "invalid"}
            ],
        )


class ProviderUnavailable(ServiceUnavailable):
    code = "payment_provider_unavailable"
    title = "The payment provider is unavailable; try again"
