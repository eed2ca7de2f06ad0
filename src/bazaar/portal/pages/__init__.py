"""The portal's pages, one module per area; each module's ``router`` checks CSRF on posts."""

from __future__ import annotations

from fastapi import APIRouter

from bazaar.portal.pages import (
    account,
    auctions,
    basket,
    catalog,
    orders,
    payments,
    selling,
    support,
)

ROUTERS: list[APIRouter] = [
    account.router,
    catalog.router,
    basket.router,
    orders.router,
    payments.router,
    auctions.router,
    selling.router,
    support.router,
]
