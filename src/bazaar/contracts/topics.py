"""Every topic the platform uses, so that ``bazaar up`` and tests can create them up front."""

from __future__ import annotations

from bazaar.contracts import auctions, auth, catalog, orders, payments, support

DEAD_LETTER = "bazaar.dead-letter"

ALL_TOPICS: tuple[str, ...] = (
    auth.TOPIC,
    catalog.TOPIC,
    catalog.COMMANDS_TOPIC,
    orders.TOPIC,
    payments.TOPIC,
    payments.COMMANDS_TOPIC,
    auctions.TOPIC,
    support.TOPIC,
    DEAD_LETTER,
)

# Who consumes what (consumer group -> topics); the services subscribe with these, and
# docs/events.md is generated from them.
SUBSCRIPTIONS: dict[str, tuple[str, ...]] = {
    "catalog": (catalog.COMMANDS_TOPIC,),
    "orders": (catalog.TOPIC, payments.TOPIC),
    "payments": (payments.COMMANDS_TOPIC,),
    "auctions": (payments.TOPIC,),
    "support": ALL_TOPICS,
}
