"""The basket (kept in the session) and checkout with a saved card.

Checkout posts the order with the idempotency key the basket page was rendered
with, so a double click or a resent form places one order.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from bazaar.portal.access import AnySession, PortalDep, UserSession
from bazaar.portal.client import ApiError
from bazaar.portal.csrf import verify_csrf
from bazaar.portal.forms import form_values, idempotency_key_of, new_idempotency_key, parse_uuid
from bazaar.portal.problems import Problem
from bazaar.portal.rendering import is_htmx, safe_next, see_other
from bazaar.portal.session import Session

router = APIRouter(dependencies=[Depends(verify_csrf)])

MAX_QUANTITY = 1000


def _quantity(raw: str | None, default: int = 1) -> int | None:
    try:
        quantity = int(raw) if raw not in (None, "") else default
    except ValueError:
        return None
    return quantity if 0 <= quantity <= MAX_QUANTITY else None


async def basket_lines(portal: PortalDep, session: Session) -> tuple[list[dict[str, Any]], Any]:
    """The basket's lines with their catalog items (one call), and totals per currency."""
    if not session.basket:
        return [], {}
    found = await portal.client.get(
        "/api/catalog/items", session, ids=",".join(session.basket), limit=100
    )
    by_id = {str(item["id"]): item for item in found.get("items", [])}
    lines = []
    totals: dict[str, int] = defaultdict(int)
    for item_id, quantity in session.basket.items():
        item = by_id.get(item_id)
        line_total = item["price"] * quantity if item else 0
        if item and item.get("active", True):
            totals[item["currency"]] += line_total
        lines.append(
            {"item_id": item_id, "item": item, "quantity": quantity, "line_total": line_total}
        )
    return lines, dict(totals)


async def render_basket(
    request: Request,
    portal: PortalDep,
    session: Session,
    *,
    problem: Problem | None = None,
    idempotency_key: str | None = None,
    chosen_method: str | None = None,
) -> Response:
    lines, totals = await basket_lines(portal, session)
    methods: list[dict[str, Any]] = []
    methods_error: ApiError | None = None
    if session.signed_in and lines:
        try:
            methods = (await portal.client.get("/api/payments/methods", session, limit=100))[
                "items"
            ]
        except ApiError as exc:
            methods_error = exc
    return portal.pages.render(
        request,
        "basket.html",
        {
            "lines": lines,
            "totals": totals,
            "methods": methods,
            "methods_error": methods_error,
            "problem": problem,
            "chosen_method": chosen_method or (methods[0]["id"] if methods else None),
            "idempotency_key": idempotency_key or new_idempotency_key(),
        },
    )


@router.get("/basket", name="basket")
async def basket(request: Request, portal: PortalDep, session: AnySession) -> Response:
    return await render_basket(request, portal, session)


@router.post("/basket/items")
async def add_to_basket(request: Request, portal: PortalDep, session: AnySession) -> Response:
    values = await form_values(request)
    item_id = parse_uuid(values.get("item_id"))
    quantity = _quantity(values.get("quantity"))
    back = safe_next(values.get("next"), f"/catalog/{item_id}" if item_id else "/catalog")
    message: tuple[str, str]
    if item_id is None or not quantity:
        message = ("error", "Choose a quantity from 1 to 1000.")
    elif item_id not in session.basket and len(session.basket) >= portal.settings.basket_max_lines:
        message = (
            "error",
            f"Your basket holds up to {portal.settings.basket_max_lines} different items. "
            "Check out or remove something first.",
        )
    else:
        before = dict(session.basket)
        session.basket[item_id] = min(MAX_QUANTITY, session.basket.get(item_id, 0) + quantity)
        session.dirty = True
        if portal.codec.fits(session):
            message = ("success", f"Added to your basket ({session.basket[item_id]} in it).")
        else:
            session.basket = before
            message = ("error", "Your basket is full. Check out or remove something first.")
    if is_htmx(request):
        return portal.pages.render(
            request,
            "_basket_added.html",
            {"level": message[0], "message": message[1], "item_id": item_id},
        )
    session.flash(message[1], message[0])
    return see_other(request, back)


@router.post("/basket/update")
async def update_basket(request: Request, portal: PortalDep, session: AnySession) -> Response:
    values = await form_values(request)
    item_id = parse_uuid(values.get("item_id"))
    quantity = _quantity(values.get("quantity"), default=0)
    if item_id is None or quantity is None:
        session.flash("Choose a quantity from 0 to 1000.", "error")
    elif quantity == 0:
        session.basket.pop(item_id, None)
        session.flash("Removed from your basket.", "info")
    elif item_id in session.basket:
        session.basket[item_id] = quantity
        session.flash("Basket updated.", "success")
    session.dirty = True
    return see_other(request, "/basket")


@router.post("/checkout")
async def checkout(request: Request, portal: PortalDep, session: UserSession) -> Response:
    values = await form_values(request)
    key = idempotency_key_of(values)
    method = parse_uuid(values.get("payment_method_id"))
    if not session.basket:
        session.flash("Your basket is empty.", "warning")
        return see_other(request, "/basket")
    if method is None:
        problem = Problem.of(422, "validation_failed", "Choose a saved card to pay with.")
        return await render_basket(request, portal, session, problem=problem, idempotency_key=key)
    body = {
        "items": [
            {"item_id": item_id, "quantity": quantity}
            for item_id, quantity in session.basket.items()
        ],
        "payment_method_id": method,
    }
    try:
        order = await portal.client.call(
            "POST", "/api/orders", session, json=body, idempotency_key=key
        )
    except ApiError as exc:
        return await render_basket(
            request,
            portal,
            session,
            problem=exc.problem,
            idempotency_key=key,
            chosen_method=method,
        )
    session.basket = {}
    session.flash("Thank you! Your order is placed; we are confirming it now.", "success")
    return see_other(request, f"/orders/{uuid.UUID(str(order['id']))}")
