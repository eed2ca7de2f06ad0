"""The support console (support and admin only): find a user, see their operations and an
entity's timeline, the problems list, and corrective actions with a reason and a
confirmation step; admins also manage roles. Everyone else gets a 403 page.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from bazaar.portal.access import AdminSession, PortalDep, StaffSession
from bazaar.portal.client import ApiError
from bazaar.portal.csrf import verify_csrf
from bazaar.portal.forms import form_list, form_values, parse_uuid
from bazaar.portal.pages.catalog import optional
from bazaar.portal.problems import FormState
from bazaar.portal.rendering import see_other
from bazaar.portal.session import Session

router = APIRouter(dependencies=[Depends(verify_csrf)])

# action -> (the kind of entity it applies to, what the button says)
ACTIONS: dict[str, tuple[str, str]] = {
    "retry_order": ("order", "Retry the order"),
    "cancel_order": ("order", "Cancel the order"),
    "refund_payment": ("payment", "Refund the payment"),
    "cancel_auction": ("auction", "Cancel the auction"),
    "retry_settlement": ("auction", "Retry the settlement"),
}
ROLES = ("customer", "seller", "support", "admin")
# An action in one of these is still being carried out: its page keeps asking.
ACTION_IN_PROGRESS = frozenset({"pending"})
ACTION_FIELDS = ("action", "target_id", "reason")
MAX_REASON = 2000


@router.get("/support", name="support")
async def console(
    request: Request, portal: PortalDep, session: StaffSession, email: str = ""
) -> Response:
    email = email.strip()[:320]
    users: list[dict[str, Any]] = []
    if email:
        users = (await portal.client.get("/api/auth/users", session, email=email, limit=20))[
            "items"
        ]
    return portal.pages.render(request, "support/index.html", {"email": email, "users": users})


async def _find_user(portal: PortalDep, session: Session, user_id: str, email: str) -> Any:
    if not email:
        return None
    page = await portal.client.get("/api/auth/users", session, email=email, limit=20)
    return next((user for user in page.get("items", []) if str(user["id"]) == user_id), None)


@router.get("/support/users/{user_id}", name="support_user")
async def user(
    request: Request,
    portal: PortalDep,
    session: StaffSession,
    user_id: uuid.UUID,
    email: str = "",
) -> Response:
    client = portal.client
    (found, _), (operations, operations_error), (orders, orders_error) = await asyncio.gather(
        optional(_find_user(portal, session, str(user_id), email.strip())),
        optional(client.get("/api/support/operations", session, user_id=str(user_id), limit=50)),
        optional(client.get("/api/orders", session, user_id=str(user_id), limit=20)),
    )
    return portal.pages.render(
        request,
        "support/user.html",
        {
            "user_id": str(user_id),
            "email": email,
            "found": found,
            "operations": (operations or {}).get("items", []),
            "operations_error": operations_error,
            "orders": (orders or {}).get("items", []),
            "orders_error": orders_error,
            "roles": ROLES,
        },
    )


@router.post("/support/users/{user_id}/roles")
async def set_roles(
    request: Request, portal: PortalDep, session: AdminSession, user_id: uuid.UUID
) -> Response:
    values = await form_values(request)
    roles = sorted({role for role in await form_list(request, "roles") if role in ROLES})
    try:
        updated = await portal.client.call(
            "PUT", f"/api/auth/users/{user_id}/roles", session, json={"roles": roles}
        )
    except ApiError as exc:
        session.flash(exc.problem.detail, "error")
    else:
        session.flash(f"Roles of {updated['email']}: {', '.join(updated['roles'])}.", "success")
    email = values.get("email", "")
    target = f"/support/users/{user_id}?{urlencode({'email': email})}" if email else "/support"
    return see_other(request, target)


def actions_for(entity_type: str | None) -> dict[str, str]:
    return {
        action: label
        for action, (kind, label) in ACTIONS.items()
        if entity_type is None or kind == entity_type
    }


@router.get("/support/timeline", name="support_timeline")
async def timeline(
    request: Request, portal: PortalDep, session: StaffSession, entity_id: str = ""
) -> Response:
    target = parse_uuid(entity_id.strip())
    items: list[dict[str, Any]] = []
    entity_type: str | None = None
    form = FormState()
    if entity_id and target is None:
        form = FormState.invalid({"entity_id": entity_id}, {"entity_id": "Enter an id (a UUID)."})
    elif target is not None:
        found = await portal.client.get("/api/support/timeline", session, entity_id=target)
        items = found.get("items", [])
        entity_type = next(
            (str(item["entity_type"]) for item in items if str(item.get("entity_id")) == target),
            None,
        )
    return portal.pages.render(
        request,
        "support/timeline.html",
        {
            "entity_id": target or entity_id,
            "items": items,
            "entity_type": entity_type,
            "actions": actions_for(entity_type),
            "form": form,
        },
    )


@router.get("/support/problems", name="support_problems")
async def problems(request: Request, portal: PortalDep, session: StaffSession) -> Response:
    found = await portal.client.get("/api/support/problems", session, limit=100)
    return portal.pages.render(
        request, "support/problems.html", {"problems": found.get("items", [])}
    )


def _check_action(values: dict[str, str]) -> dict[str, str]:
    errors = {}
    if values.get("action") not in ACTIONS:
        errors["action"] = "Choose an action."
    if parse_uuid(values.get("target_id")) is None:
        errors["target_id"] = "Enter the id (a UUID) of the order, payment or auction."
    reason = values.get("reason", "")
    if not reason:
        errors["reason"] = "Say why: it goes into the audit trail and the timeline."
    elif len(reason) > MAX_REASON:
        errors["reason"] = f"Keep it under {MAX_REASON} characters."
    return errors


@router.get("/support/actions/new", name="support_new_action")
async def new_action(
    request: Request,
    portal: PortalDep,
    session: StaffSession,
    target_id: str = "",
    action: str = "",
) -> Response:
    form = FormState(values={"target_id": target_id, "action": action})
    return portal.pages.render(
        request, "support/new_action.html", {"form": form, "actions": actions_for(None)}
    )


@router.post("/support/actions/review")
async def review_action(request: Request, portal: PortalDep, session: StaffSession) -> Response:
    """The confirmation step: what will be done, to what, and why, before it is done."""
    values = await form_values(request)
    errors = _check_action(values)
    if errors:
        return portal.pages.render(
            request,
            "support/new_action.html",
            {"form": FormState.invalid(values, errors), "actions": actions_for(None)},
        )
    return portal.pages.render(
        request,
        "support/confirm.html",
        {"values": values, "label": ACTIONS[values["action"]][1]},
    )


@router.post("/support/actions")
async def perform_action(request: Request, portal: PortalDep, session: StaffSession) -> Response:
    values = await form_values(request)
    errors = _check_action(values)
    if errors or values.get("confirmed") != "yes":
        return portal.pages.render(
            request,
            "support/new_action.html",
            {"form": FormState.invalid(values, errors), "actions": actions_for(None)},
        )
    try:
        action = await portal.client.call(
            "POST",
            "/api/support/actions",
            session,
            json={
                "action": values["action"],
                "target_id": parse_uuid(values["target_id"]),
                "reason": values["reason"],
            },
        )
    except ApiError as exc:
        return portal.pages.render(
            request,
            "support/new_action.html",
            {
                "form": FormState.failed(exc.problem, values, ACTION_FIELDS),
                "actions": actions_for(None),
            },
        )
    session.flash("The action is requested.", "success")
    return see_other(request, f"/support/actions/{uuid.UUID(str(action['id']))}")


@router.get("/support/actions/{action_id}", name="support_action")
async def action_page(
    request: Request, portal: PortalDep, session: StaffSession, action_id: uuid.UUID
) -> Response:
    found = await portal.client.get(f"/api/support/actions/{action_id}", session)
    return portal.pages.render(
        request,
        "support/action.html",
        {"action": found, "moving": found.get("status") in ACTION_IN_PROGRESS},
    )


@router.get("/support/actions/{action_id}/status", name="support_action_status")
async def action_status(
    request: Request, portal: PortalDep, session: StaffSession, action_id: uuid.UUID
) -> Response:
    found = await portal.client.get(f"/api/support/actions/{action_id}", session)
    return portal.pages.render(
        request,
        "support/_action_status.html",
        {"action": found, "moving": found.get("status") in ACTION_IN_PROGRESS},
    )
