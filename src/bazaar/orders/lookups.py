"""What orders asks other services over HTTP, through the gateway with its own
client-credentials token: the catalog's prices and the owner of a payment method.

The saga itself talks to catalog and payments over the broker; these calls happen
only while an order is being created, so that the order is priced by the catalog and
paid with the caller's own method.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from bazaar.kit.errors import ServiceUnavailable
from bazaar.kit.gateway_client import GatewayClient
from bazaar.kit.payment_methods import GatewayPaymentMethods, PaymentMethodCheck
from bazaar.orders.errors import CatalogUnavailable, PaymentsUnavailable


@dataclass(frozen=True, slots=True)
class CatalogItem:
    id: uuid.UUID
    seller_id: uuid.UUID
    title: str
    price: int
    currency: str
    active: bool


class Lookups:
    def __init__(self, gateway: GatewayClient, *, method_cache_seconds: float) -> None:
        self._gateway = gateway
        self._payment_methods = PaymentMethodCheck(
            GatewayPaymentMethods(gateway), ttl_seconds=method_cache_seconds
        )

    async def catalog_items(self, item_ids: list[uuid.UUID]) -> dict[uuid.UUID, CatalogItem]:
        """The items the catalog knows among ``item_ids`` (withdrawn ones included), by id;
        ``GET /api/catalog/items?ids=`` takes up to 100 ids, an order's maximum."""
        try:
            status, body = await self._gateway.request_json(
                "GET",
                "/api/catalog/items",
                params={"ids": ",".join(str(item_id) for item_id in item_ids)},
            )
        except ServiceUnavailable as exc:
            raise CatalogUnavailable() from exc
        if status != 200 or not isinstance(body, dict):
            raise CatalogUnavailable(f"The catalog answered {status} to a price look-up")
        try:
            items = [_catalog_item(raw) for raw in body["items"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise CatalogUnavailable("The catalog's answer was not understood") from exc
        return {item.id: item for item in items}

    async def owns_payment_method(self, user_id: uuid.UUID, method_id: uuid.UUID) -> bool:
        """Whether ``method_id`` is ``user_id``'s (asked of payments, remembered a while:
        :mod:`bazaar.kit.payment_methods`)."""
        try:
            return await self._payment_methods.owns(user_id, method_id)
        except ServiceUnavailable as exc:
            raise PaymentsUnavailable(exc.detail) from exc


def _catalog_item(raw: dict[str, Any]) -> CatalogItem:
    price = raw["price"]
    if not isinstance(price, int) or isinstance(price, bool):
        raise ValueError("price is not an integer")
    return CatalogItem(
        id=uuid.UUID(str(raw["id"])),
        seller_id=uuid.UUID(str(raw["seller_id"])),
        title=str(raw["title"]),
        price=price,
        currency=str(raw["currency"]),
        active=bool(raw["active"]),
    )
