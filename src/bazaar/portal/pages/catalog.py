"""The front page and the catalog: browse, search (as you type, with htmx), one item."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from bazaar.portal.access import AnySession, PortalDep
from bazaar.portal.client import ApiError
from bazaar.portal.csrf import verify_csrf
from bazaar.portal.paging import make_pager
from bazaar.portal.rendering import is_htmx

router = APIRouter(dependencies=[Depends(verify_csrf)])

Kind = Literal["good", "service", ""]


async def optional(call: Any) -> tuple[Any, ApiError | None]:
    """A side panel's data, or the reason it is missing (the page still shows)."""
    try:
        return await call, None
    except ApiError as exc:
        return None, exc


@router.get("/", name="home")
async def home(request: Request, portal: PortalDep, session: AnySession) -> Response:
    client = portal.client
    items, items_error = await optional(client.get("/api/catalog/items", session, limit=8))
    auctions, auctions_error = await optional(
        client.get("/api/auctions", session, status="open", limit=4)
    )
    return portal.pages.render(
        request,
        "home.html",
        {
            "items": (items or {}).get("items", []),
            "items_error": items_error,
            "auctions": (auctions or {}).get("items", []),
            "auctions_error": auctions_error,
        },
    )


@router.get("/catalog", name="catalog")
async def catalog(
    request: Request,
    portal: PortalDep,
    session: AnySession,
    q: str = "",
    kind: Kind = "",
    cursor: str = "",
    trail: str = "",
) -> Response:
    q = q.strip()[:200]
    page = await portal.client.get(
        "/api/catalog/items",
        session,
        q=q,
        kind=kind,
        cursor=cursor,
        limit=portal.settings.page_size,
    )
    pager = make_pager(
        "/catalog",
        {"q": q, "kind": kind},
        cursor=cursor or None,
        trail=trail,
        next_cursor=page.get("next_cursor"),
    )
    context = {"items": page.get("items", []), "q": q, "kind": kind, "pager": pager}
    if is_htmx(request) and request.headers.get("hx-target") == "catalog-results":
        return portal.pages.render(request, "catalog/_results.html", context)
    return portal.pages.render(request, "catalog/list.html", context)


@router.get("/catalog/{item_id}", name="item")
async def item(
    request: Request, portal: PortalDep, session: AnySession, item_id: uuid.UUID
) -> Response:
    found = await portal.client.get(f"/api/catalog/items/{item_id}", session)
    return portal.pages.render(
        request,
        "catalog/item.html",
        {"item": found, "in_basket": session.basket.get(str(item_id), 0)},
    )
