"""The catalog's refusals."""

from __future__ import annotations

from bazaar.kit.errors import Forbidden, NotFound


class ItemNotFound(NotFound):
    code = "item_not_found"
    title = "No such item"


class NotItemSeller(Forbidden):
    code = "not_item_seller"
    title = "Only the item's seller (or an admin) may change it"


class ReservationChanged(RuntimeError):
    """Two commands about one reservation, with different lines, ran at the same time (a
    sender's bug). Never an HTTP answer: the stock command's transaction is rolled back
    and the consumer handles the command again, which then finds the other's answer."""
