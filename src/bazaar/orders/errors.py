"""The orders service's refusals."""

from __future__ import annotations

from bazaar.kit.errors import Conflict, NotFound, ServiceUnavailable, ValidationFailed


class OrderNotFound(NotFound):
    """Also the answer for someone else's order: its existence is not disclosed."""

    code = "order_not_found"
    title = "No such order"


class ItemUnavailable(ValidationFailed):
    code = "item_unavailable"
    title = "An item is unknown or withdrawn"


class MixedCurrencies(ValidationFailed):
    code = "mixed_currencies"
    title = "All items of an order must be priced in one currency"


class PaymentMethodInvalid(ValidationFailed):
    code = "payment_method_invalid"
    title = "The payment method is not one of yours"


class OrderNotCancellable(Conflict):
    code = "order_not_cancellable"
    title = "The order is already cancelled"


class OrderNotRetryable(Conflict):
    code = "order_not_retryable"
    title = "Only a pending order, or one the platform cancelled, can be retried"


class CatalogUnavailable(ServiceUnavailable):
    code = "catalog_unavailable"
    title = "The catalog could not price the order; try again"


class PaymentsUnavailable(ServiceUnavailable):
    code = "payments_unavailable"
    title = "The payment method could not be checked; try again"
