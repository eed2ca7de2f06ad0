"""Sellers' catalog pages: my items, a new item, withdrawing one, my sales."""

from __future__ import annotations

import re
import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from bazaar.portal.access import PortalDep, SellerSession
from bazaar.portal.client import ApiError
from bazaar.portal.csrf import verify_csrf
from bazaar.portal.forms import form_values
from bazaar.portal.money import CURRENCIES, parse_money
from bazaar.portal.paging import make_pager
from bazaar.portal.problems import FormState
from bazaar.portal.rendering import see_other

router = APIRouter(dependencies=[Depends(verify_csrf)])

ITEM_FIELDS = ("kind", "title", "description", "price", "currency", "stock")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


@router.get("/sell/items", name="my_items")
async def my_items(
    request: Request, portal: PortalDep, session: SellerSession, cursor: str = "", trail: str = ""
) -> Response:
    page = await portal.client.get(
        "/api/catalog/items",
        session,
        seller_id=session.user_id,
        cursor=cursor,
        limit=portal.settings.page_size,
    )
    pager = make_pager(
        "/sell/items", {}, cursor=cursor or None, trail=trail, next_cursor=page.get("next_cursor")
    )
    return portal.pages.render(
        request, "sell/items.html", {"items": page.get("items", []), "pager": pager}
    )


def _new_item_page(request: Request, portal: PortalDep, form: FormState) -> Response:
    return portal.pages.render(
        request, "sell/new_item.html", {"form": form, "currencies": CURRENCIES}
    )


@router.get("/sell/items/new", name="new_item")
async def new_item_page(request: Request, portal: PortalDep, session: SellerSession) -> Response:
    return _new_item_page(request, portal, FormState(values={"kind": "good", "currency": "USD"}))


def item_request(values: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The API body for the new-item form, or the fields that are wrong."""
    errors: dict[str, str] = {}
    body: dict[str, Any] = {
        "kind": values.get("kind", ""),
        "title": values.get("title", ""),
        "description": values.get("description", ""),
        "currency": values.get("currency", ""),
    }
    if body["kind"] not in ("good", "service"):
        errors["kind"] = "Choose a good or a service."
    if not body["title"]:
        errors["title"] = "Required."
    if not _CURRENCY.match(body["currency"]):
        errors["currency"] = "Choose a currency."
    try:
        body["price"] = parse_money(values.get("price", ""), body["currency"] or "USD")
    except ValueError as exc:
        errors["price"] = str(exc)
    stock = values.get("stock", "")
    if stock:
        try:
            body["stock"] = int(stock)
            if body["stock"] < 0:
                raise ValueError
        except ValueError:
            errors["stock"] = "Enter a whole number, or leave it empty for unlimited."
    else:
        body["stock"] = None
    return body, errors


@router.post("/sell/items/new")
async def create_item(request: Request, portal: PortalDep, session: SellerSession) -> Response:
    values = await form_values(request)
    body, errors = item_request(values)
    if errors:
        return _new_item_page(request, portal, FormState.invalid(values, errors))
    try:
        created = await portal.client.call("POST", "/api/catalog/items", session, json=body)
    except ApiError as exc:
        return _new_item_page(request, portal, FormState.failed(exc.problem, values, ITEM_FIELDS))
    session.flash(f"“{created['title']}” is in the catalog.", "success")
    return see_other(request, f"/catalog/{uuid.UUID(str(created['id']))}")


@router.post("/sell/items/{item_id}/withdraw")
async def withdraw_item(
    request: Request, portal: PortalDep, session: SellerSession, item_id: uuid.UUID
) -> Response:
    try:
        await portal.client.call(
            "PATCH", f"/api/catalog/items/{item_id}", session, json={"active": False}
        )
    except ApiError as exc:
        session.flash(exc.problem.detail, "error")
    else:
        session.flash("The item is withdrawn from the catalog.", "success")
    return see_other(request, "/sell/items")


@router.get("/sell/sales", name="my_sales")
async def my_sales(
    request: Request, portal: PortalDep, session: SellerSession, cursor: str = "", trail: str = ""
) -> Response:
    page = await portal.client.get(
        "/api/orders/sales", session, cursor=cursor, limit=portal.settings.page_size
    )
    pager = make_pager(
        "/sell/sales", {}, cursor=cursor or None, trail=trail, next_cursor=page.get("next_cursor")
    )
    return portal.pages.render(
        request, "sell/sales.html", {"sales": page.get("items", []), "pager": pager}
    )
