"""My payment methods (add a card, delete one) and my payments.

The card form posts here and the portal passes the number straight on to
``POST /api/payments/methods``: it is never logged (no request body is), never
stored, and never rendered back into the form when something is wrong.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from bazaar.portal.access import PortalDep, UserSession
from bazaar.portal.client import ApiError
from bazaar.portal.csrf import verify_csrf
from bazaar.portal.forms import form_values, idempotency_key_of, new_idempotency_key
from bazaar.portal.paging import make_pager
from bazaar.portal.problems import FormState
from bazaar.portal.rendering import safe_next, see_other
from bazaar.portal.session import Session

router = APIRouter(dependencies=[Depends(verify_csrf)])

CARD_FIELDS = ("card_number", "exp_month", "exp_year", "cvc")
# Shown again after a refusal; the number and the CVC never are.
KEPT_FIELDS = ("exp_month", "exp_year")


async def render_methods(
    request: Request,
    portal: PortalDep,
    session: Session,
    *,
    form: FormState | None = None,
    next_url: str = "",
    idempotency_key: str | None = None,
) -> Response:
    methods = await portal.client.get("/api/payments/methods", session, limit=100)
    return portal.pages.render(
        request,
        "payments/methods.html",
        {
            "methods": methods.get("items", []),
            "form": form or FormState(),
            "next": next_url,
            "idempotency_key": idempotency_key or new_idempotency_key(),
        },
    )


@router.get("/payments/methods", name="payment_methods")
async def methods(
    request: Request, portal: PortalDep, session: UserSession, next: str = ""
) -> Response:
    return await render_methods(request, portal, session, next_url=safe_next(next, ""))


@router.post("/payments/methods")
async def add_method(request: Request, portal: PortalDep, session: UserSession) -> Response:
    values = await form_values(request)
    next_url = safe_next(values.get("next"), "")
    key = idempotency_key_of(values)
    kept = {name: values.get(name, "") for name in KEPT_FIELDS}
    errors = {name: "Required." for name in CARD_FIELDS if not values.get(name)}
    numbers: dict[str, int] = {}
    for name in KEPT_FIELDS:
        if name not in errors:
            try:
                numbers[name] = int(values[name])
            except ValueError:
                errors[name] = "Enter a number."
    if errors:
        form = FormState.invalid(kept, errors)
        return await render_methods(
            request, portal, session, form=form, next_url=next_url, idempotency_key=key
        )
    card_number = "".join(values["card_number"].split())
    try:
        method = await portal.client.call(
            "POST",
            "/api/payments/methods",
            session,
            json={
                "card_number": card_number,
                "exp_month": numbers["exp_month"],
                "exp_year": numbers["exp_year"],
                "cvc": values["cvc"],
            },
            idempotency_key=key,
        )
    except ApiError as exc:
        form = FormState.failed(exc.problem, kept, CARD_FIELDS)
        # A new key: the corrected card is a different request.
        return await render_methods(request, portal, session, form=form, next_url=next_url)
    session.flash(
        f"{method.get('brand', 'Card').title()} ending in {method.get('last4', '')} is saved.",
        "success",
    )
    return see_other(request, next_url or "/payments/methods")


@router.post("/payments/methods/{method_id}/delete")
async def delete_method(
    request: Request, portal: PortalDep, session: UserSession, method_id: uuid.UUID
) -> Response:
    try:
        await portal.client.call("DELETE", f"/api/payments/methods/{method_id}", session)
    except ApiError as exc:
        session.flash(exc.problem.detail, "error")
    else:
        session.flash("The card is deleted.", "success")
    return see_other(request, "/payments/methods")


@router.get("/payments", name="payments")
async def payments(
    request: Request, portal: PortalDep, session: UserSession, cursor: str = "", trail: str = ""
) -> Response:
    page = await portal.client.get(
        "/api/payments", session, cursor=cursor, limit=portal.settings.page_size
    )
    pager = make_pager(
        "/payments", {}, cursor=cursor or None, trail=trail, next_cursor=page.get("next_cursor")
    )
    return portal.pages.render(
        request, "payments/list.html", {"payments": page.get("items", []), "pager": pager}
    )
