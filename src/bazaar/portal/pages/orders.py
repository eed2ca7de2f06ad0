"""My orders: the list, one order with its live status, and cancelling."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from bazaar.portal.access import PortalDep, UserSession
from bazaar.portal.client import ApiError
from bazaar.portal.csrf import verify_csrf
from bazaar.portal.paging import make_pager
from bazaar.portal.rendering import see_other

router = APIRouter(dependencies=[Depends(verify_csrf)])

# While an order is in one of these, its page asks for news every second.
MOVING = frozenset({"pending", "cancelling"})


@router.get("/orders", name="orders")
async def orders(
    request: Request, portal: PortalDep, session: UserSession, cursor: str = "", trail: str = ""
) -> Response:
    page = await portal.client.get(
        "/api/orders", session, cursor=cursor, limit=portal.settings.page_size
    )
    pager = make_pager(
        "/orders", {}, cursor=cursor or None, trail=trail, next_cursor=page.get("next_cursor")
    )
    return portal.pages.render(
        request, "orders/list.html", {"orders": page.get("items", []), "pager": pager}
    )


@router.get("/orders/{order_id}", name="order")
async def order(
    request: Request, portal: PortalDep, session: UserSession, order_id: uuid.UUID
) -> Response:
    found = await portal.client.get(f"/api/orders/{order_id}", session)
    return portal.pages.render(
        request, "orders/detail.html", {"order": found, "moving": found["status"] in MOVING}
    )


@router.get("/orders/{order_id}/status", name="order_status")
async def order_status(
    request: Request, portal: PortalDep, session: UserSession, order_id: uuid.UUID
) -> Response:
    """The status panel alone, for the page's polling (it stops once the status is final)."""
    found = await portal.client.get(f"/api/orders/{order_id}", session)
    return portal.pages.render(
        request, "orders/_status.html", {"order": found, "moving": found["status"] in MOVING}
    )


@router.post("/orders/{order_id}/cancel")
async def cancel(
    request: Request, portal: PortalDep, session: UserSession, order_id: uuid.UUID
) -> Response:
    try:
        await portal.client.call("POST", f"/api/orders/{order_id}/cancel", session)
    except ApiError as exc:
        session.flash(exc.problem.detail, "error")
    else:
        session.flash("Cancellation requested. Any payment will be refunded.", "success")
    return see_other(request, f"/orders/{order_id}")
