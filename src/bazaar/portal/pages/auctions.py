"""Auctions: the list, the live auction page, bidding (with a maximum), buy now, my bids,
and for sellers their auctions (create, cancel).

The auction page follows ``GET /api/auctions/{id}/stream`` through
``/auctions/{id}/events``, a same-origin relay (the browser's EventSource cannot
send the portal's cookie elsewhere, and the portal may run on its own origin);
``static/auction.js`` applies each event to the page.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import aiohttp
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import Response, StreamingResponse

from bazaar.portal.access import AnySession, PortalDep, SellerSession, UserSession
from bazaar.portal.client import ApiError
from bazaar.portal.csrf import verify_csrf
from bazaar.portal.forms import form_values, idempotency_key_of, new_idempotency_key, parse_uuid
from bazaar.portal.money import CURRENCIES, format_money, parse_money
from bazaar.portal.paging import make_pager
from bazaar.portal.problems import FormState
from bazaar.portal.rendering import is_htmx, see_other
from bazaar.portal.session import Session

router = APIRouter(dependencies=[Depends(verify_csrf)])

Status = Literal["scheduled", "open", "closing", "settled", "unsold", "cancelled", ""]
BID_FIELDS = ("amount", "max_amount", "payment_method_id")
AUCTION_FIELDS = (
    "title",
    "description",
    "currency",
    "starting_price",
    "min_increment",
    "reserve_price",
    "buy_now_price",
    "duration",
    "duration_unit",
    "soft_close_seconds",
    "max_extensions",
)
DURATION_UNITS = {"minutes": 60, "hours": 3600, "days": 86400}
# "My bids" shows this many of the newest auctions I bid on (open; and settled, for won).
MY_BIDS_LIMIT = 100
_CURRENCY = re.compile(r"^[A-Z]{3}$")


def next_minimum(auction: dict[str, Any]) -> int:
    """The least amount a new bid may have."""
    current = auction.get("current_price")
    if not auction.get("bid_count") or current is None:
        return int(auction["starting_price"])
    return int(current) + int(auction["min_increment"])


async def my_methods(portal: PortalDep, session: Session) -> list[dict[str, Any]]:
    if not session.signed_in:
        return []
    try:
        page = await portal.client.get("/api/payments/methods", session, limit=100)
    except ApiError:
        return []
    return list(page.get("items", []))


@router.get("/auctions", name="auctions")
async def auctions(
    request: Request,
    portal: PortalDep,
    session: AnySession,
    status: Status = "open",
    cursor: str = "",
    trail: str = "",
) -> Response:
    page = await portal.client.get(
        "/api/auctions", session, status=status, cursor=cursor, limit=portal.settings.page_size
    )
    pager = make_pager(
        "/auctions",
        {"status": status},
        cursor=cursor or None,
        trail=trail,
        next_cursor=page.get("next_cursor"),
    )
    return portal.pages.render(
        request,
        "auctions/list.html",
        {"auctions": page.get("items", []), "status": status, "pager": pager},
    )


@router.get("/auctions/my-bids", name="my_bids")
async def my_bids(request: Request, portal: PortalDep, session: UserSession) -> Response:
    """Open auctions I bid on, with where I stand, and auctions I won (the API's filter by
    bidder: ``GET /api/auctions?bidder_id=``)."""
    client = portal.client
    open_page, settled_page = await asyncio.gather(
        client.get(
            "/api/auctions", session, bidder_id=session.user_id, status="open", limit=MY_BIDS_LIMIT
        ),
        client.get(
            "/api/auctions",
            session,
            bidder_id=session.user_id,
            status="settled",
            limit=MY_BIDS_LIMIT,
        ),
    )
    bidding = [
        {
            "auction": auction,
            "my_best": auction["bidder_standing"]["best_amount"],
            "leading": bool(auction["bidder_standing"]["leading"]),
        }
        for auction in open_page.get("items", [])
        if auction.get("bidder_standing")
    ]
    won = [a for a in settled_page.get("items", []) if str(a.get("winner_id")) == session.user_id]
    return portal.pages.render(request, "auctions/my_bids.html", {"bidding": bidding, "won": won})


@router.get("/auctions/selling", name="my_auctions")
async def my_auctions(
    request: Request, portal: PortalDep, session: SellerSession, cursor: str = "", trail: str = ""
) -> Response:
    page = await portal.client.get(
        "/api/auctions",
        session,
        seller_id=session.user_id,
        cursor=cursor,
        limit=portal.settings.page_size,
    )
    pager = make_pager(
        "/auctions/selling",
        {},
        cursor=cursor or None,
        trail=trail,
        next_cursor=page.get("next_cursor"),
    )
    return portal.pages.render(
        request, "auctions/selling.html", {"auctions": page.get("items", []), "pager": pager}
    )


def _new_auction_page(request: Request, portal: PortalDep, form: FormState) -> Response:
    return portal.pages.render(
        request,
        "auctions/new.html",
        {"form": form, "currencies": CURRENCIES, "units": list(DURATION_UNITS)},
    )


@router.get("/auctions/new", name="new_auction")
async def new_auction_page(request: Request, portal: PortalDep, session: SellerSession) -> Response:
    defaults = {"currency": "USD", "duration": "1", "duration_unit": "days", "min_increment": "1"}
    return _new_auction_page(request, portal, FormState(values=defaults))


def auction_request(values: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The API body for the new-auction form, or the fields that are wrong."""
    errors: dict[str, str] = {}
    currency = values.get("currency", "")
    if not _CURRENCY.match(currency):
        errors["currency"] = "Choose a currency."
    body: dict[str, Any] = {
        "title": values.get("title", ""),
        "description": values.get("description", ""),
        "currency": currency,
    }
    if not body["title"]:
        errors["title"] = "Required."
    for name in ("starting_price", "min_increment", "reserve_price", "buy_now_price"):
        raw = values.get(name, "")
        if not raw:
            if name in ("starting_price", "min_increment"):
                errors[name] = "Required."
            continue
        try:
            body[name] = parse_money(raw, currency if "currency" not in errors else "USD")
        except ValueError as exc:
            errors[name] = str(exc)
    try:
        duration = int(values.get("duration", ""))
        unit = DURATION_UNITS[values.get("duration_unit", "")]
        if duration <= 0:
            raise ValueError
        body["ends_at"] = (
            (datetime.now(UTC) + timedelta(seconds=duration * unit))
            .isoformat()
            .replace("+00:00", "Z")
        )
    except (ValueError, KeyError):
        errors["duration"] = "Enter how long the auction runs."
    for name in ("soft_close_seconds", "max_extensions"):
        raw = values.get(name, "")
        if raw:
            try:
                body[name] = int(raw)
            except ValueError:
                errors[name] = "Enter a whole number."
    return body, errors


@router.post("/auctions/new")
async def create_auction(request: Request, portal: PortalDep, session: SellerSession) -> Response:
    values = await form_values(request)
    body, errors = auction_request(values)
    if errors:
        return _new_auction_page(request, portal, FormState.invalid(values, errors))
    try:
        created = await portal.client.call("POST", "/api/auctions", session, json=body)
    except ApiError as exc:
        form = FormState.failed(exc.problem, values, AUCTION_FIELDS)
        if "ends_at" in {error.field for error in exc.problem.errors}:
            form.errors.setdefault("duration", exc.problem.field_messages(["ends_at"])["ends_at"])
        return _new_auction_page(request, portal, form)
    session.flash("Your auction is up.", "success")
    return see_other(request, f"/auctions/{uuid.UUID(str(created['id']))}")


async def _auction_context(
    portal: PortalDep, session: Session, auction_id: uuid.UUID
) -> dict[str, Any]:
    auction, bids, methods = await asyncio.gather(
        portal.client.get(f"/api/auctions/{auction_id}", session),
        portal.client.get(f"/api/auctions/{auction_id}/bids", session, limit=20),
        my_methods(portal, session),
    )
    return {"auction": auction, "bids": bids.get("items", []), "methods": methods}


def _bid_form(
    auction: dict[str, Any],
    methods: list[dict[str, Any]],
    *,
    form: FormState | None = None,
    result: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "auction": auction,
        "methods": methods,
        "form": form or FormState(),
        "result": result,
        "minimum": next_minimum(auction),
        "idempotency_key": new_idempotency_key(),
    }


@router.get("/auctions/{auction_id}", name="auction")
async def auction(
    request: Request, portal: PortalDep, session: AnySession, auction_id: uuid.UUID
) -> Response:
    context = await _auction_context(portal, session, auction_id)
    context.update(_bid_form(context["auction"], context["methods"]))
    return portal.pages.render(request, "auctions/detail.html", context)


@router.get("/auctions/{auction_id}/events")
async def events(
    portal: PortalDep,
    auction_id: uuid.UUID,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> Response:
    """The auction's event stream, relayed as it comes (the browser reconnects with
    ``Last-Event-ID`` and the platform replays what it missed)."""
    upstream = await portal.client.open_stream(f"/api/auctions/{auction_id}/stream", last_event_id)

    async def relay() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, TimeoutError):
            return  # the browser reconnects and resumes
        finally:
            upstream.release()

    return StreamingResponse(
        relay(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.post("/auctions/{auction_id}/bids")
async def bid(
    request: Request, portal: PortalDep, session: UserSession, auction_id: uuid.UUID
) -> Response:
    values = await form_values(request)
    key = idempotency_key_of(values)
    current = await portal.client.get(f"/api/auctions/{auction_id}", session)
    currency = str(current["currency"])
    errors: dict[str, str] = {}
    body: dict[str, Any] = {}
    for name in ("amount", "max_amount"):
        if values.get(name):
            try:
                body[name] = parse_money(values[name], currency)
            except ValueError as exc:
                errors[name] = str(exc)
    if not values.get("amount"):
        errors["amount"] = "Enter your bid."
    method = parse_uuid(values.get("payment_method_id"))
    if method is None:
        errors["payment_method_id"] = "Choose a saved card (the winner's card is charged)."
    body["payment_method_id"] = method
    form: FormState | None = None
    result: dict[str, Any] | None = None
    if errors:
        form = FormState.invalid(values, errors)
    else:
        try:
            placed = await portal.client.call(
                "POST", f"/api/auctions/{auction_id}/bids", session, json=body, idempotency_key=key
            )
        except ApiError as exc:
            form = FormState.failed(exc.problem, values, BID_FIELDS)
        else:
            result = placed
            current["current_price"] = placed.get("current_price", current.get("current_price"))
            current["bid_count"] = int(current.get("bid_count") or 0) + 1
    if not is_htmx(request):
        if result is not None:
            session.flash(_bid_message(result, currency), "success")
        elif form is not None and form.problem is not None:
            session.flash(form.problem.detail, "error")
        return see_other(request, f"/auctions/{auction_id}")
    # The form comes back with a new key: whatever is bid next is a new request.
    methods = await my_methods(portal, session)
    context = _bid_form(current, methods, form=form, result=result)
    return portal.pages.render(request, "auctions/_bid_form.html", context)


def _bid_message(result: dict[str, Any], currency: str) -> str:
    amount = format_money(result.get("amount"), currency)
    if result.get("leading"):
        return f"Your bid of {amount} is in. You are the highest bidder."
    return f"Your bid of {amount} is in, but someone's maximum is higher: you are outbid."


@router.post("/auctions/{auction_id}/buy-now")
async def buy_now(
    request: Request, portal: PortalDep, session: UserSession, auction_id: uuid.UUID
) -> Response:
    values = await form_values(request)
    method = parse_uuid(values.get("payment_method_id"))
    if method is None:
        session.flash("Choose a saved card to buy with.", "error")
        return see_other(request, f"/auctions/{auction_id}")
    try:
        await portal.client.call(
            "POST",
            f"/api/auctions/{auction_id}/buy-now",
            session,
            json={"payment_method_id": method},
            idempotency_key=idempotency_key_of(values),
        )
    except ApiError as exc:
        session.flash(exc.problem.detail, "error")
    else:
        session.flash("It's yours! We are charging your card now.", "success")
    return see_other(request, f"/auctions/{auction_id}")


@router.post("/auctions/{auction_id}/cancel")
async def cancel_auction(
    request: Request, portal: PortalDep, session: SellerSession, auction_id: uuid.UUID
) -> Response:
    values = await form_values(request)
    body = {"reason": values["reason"]} if values.get("reason") else {}
    try:
        await portal.client.call("POST", f"/api/auctions/{auction_id}/cancel", session, json=body)
    except ApiError as exc:
        session.flash(exc.problem.detail, "error")
    else:
        session.flash("The auction is cancelled.", "success")
    return see_other(request, f"/auctions/{auction_id}")
