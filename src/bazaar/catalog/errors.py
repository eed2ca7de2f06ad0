"""The catalog's refusals."""

from __future__ import annotations

from bazaar.kit.errors import Forbidden, NotFound


class ItemNotFound(NotFound):
    code = "item_not_found"
    title = "No such item"


class NotItemSeller(Forbidden):
    code = "not_item_seller"
    title = "Only the item's seller (or an admin) may change it"
