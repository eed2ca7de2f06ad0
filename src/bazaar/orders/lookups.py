"""What orders asks other services over HTTP, through the gateway with its own
client-credentials token: the catalog's prices and the owner of a payment method.

The saga itself talks to catalog and payments over the broker; these calls happen
only while an order is being created, so that the order is priced by the catalog and
paid with the caller's own method.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bazaar.kit.errors import ServiceUnavailable
from bazaar.kit.gateway_client import GatewayClient
from bazaar.orders.errors import CatalogUnavailable, PaymentsUnavailable


@dataclass(frozen=True, slots=True)
class CatalogItem:
    id: uuid.UUID
    seller_id: uuid.UUID
    title: str
    price: int
    currency: str
    active: bool


# A method's owner never changes, so an answer about it may be reused; only for a while,
# because a method can be deleted (payments checks the method again when it charges, and
# an order placed with a method deleted meanwhile ends cancelled, ``payment_failed``).
OWNER_TTL_SECONDS = 60.0
OWNERS_KEPT = 10_000


class Lookups:
    def __init__(
        self, gateway: GatewayClient, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._gateway = gateway
        self._clock = clock
        # method id -> (owner, when asked); insertion order is age order.
        self._owners: dict[uuid.UUID, tuple[uuid.UUID, float]] = {}

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

    async def payment_method_owner(self, method_id: uuid.UUID) -> uuid.UUID | None:
        """Whose payment method ``method_id`` is; ``None`` if payments knows none such
        (unknown or deleted). A buyer pays order after order with the same card, so an
        owner learnt in the last :data:`OWNER_TTL_SECONDS` is not asked again."""
        now = self._clock()
        known = self._owners.get(method_id)
        if known is not None and now - known[1] < OWNER_TTL_SECONDS:
            return known[0]
        owner = await self._ask_payment_method_owner(method_id)
        self._owners.pop(method_id, None)
        if owner is not None:
            if len(self._owners) >= OWNERS_KEPT:
                del self._owners[next(iter(self._owners))]
            self._owners[method_id] = (owner, now)
        return owner

    async def _ask_payment_method_owner(self, method_id: uuid.UUID) -> uuid.UUID | None:
        try:
            status, body = await self._gateway.request_json(
                "GET", f"/api/payments/methods/{method_id}"
            )
        except ServiceUnavailable as exc:
            raise PaymentsUnavailable() from exc
        if status == 404:
            return None
        if status != 200 or not isinstance(body, dict):
            raise PaymentsUnavailable(f"Payments answered {status} to a method look-up")
        try:
            return uuid.UUID(str(body["user_id"]))
        except (KeyError, ValueError) as exc:
            raise PaymentsUnavailable("Payments' answer was not understood") from exc


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
