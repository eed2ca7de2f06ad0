"""The payment-method owner look-up asks payments once a minute per method, not per order."""

from __future__ import annotations

import uuid
from typing import Any, cast

from bazaar.kit.gateway_client import GatewayClient
from bazaar.orders.lookups import OWNER_TTL_SECONDS, Lookups


class Payments:
    """Stands in for the gateway in front of payments: counts the questions."""

    def __init__(self, owners: dict[uuid.UUID, uuid.UUID]) -> None:
        self.owners = owners
        self.asked: list[str] = []

    async def request_json(self, method: str, path: str, **_: Any) -> tuple[int, Any]:
        self.asked.append(path)
        method_id = uuid.UUID(path.rsplit("/", 1)[1])
        owner = self.owners.get(method_id)
        return (200, {"user_id": str(owner)}) if owner else (404, {"code": "not_found"})


async def test_an_owner_is_asked_once_while_fresh_and_again_after() -> None:
    card, buyer = uuid.uuid4(), uuid.uuid4()
    payments = Payments({card: buyer})
    now = [1000.0]
    lookups = Lookups(cast(GatewayClient, payments), clock=lambda: now[0])

    assert await lookups.payment_method_owner(card) == buyer
    now[0] += OWNER_TTL_SECONDS - 1
    assert await lookups.payment_method_owner(card) == buyer
    assert len(payments.asked) == 1

    del payments.owners[card]  # deleted meanwhile
    now[0] += 2
    assert await lookups.payment_method_owner(card) is None
    assert len(payments.asked) == 2


async def test_an_unknown_method_is_asked_about_every_time() -> None:
    payments = Payments({})
    lookups = Lookups(cast(GatewayClient, payments))
    card = uuid.uuid4()
    assert await lookups.payment_method_owner(card) is None
    assert await lookups.payment_method_owner(card) is None
    assert len(payments.asked) == 2
