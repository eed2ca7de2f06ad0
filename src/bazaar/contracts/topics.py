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
