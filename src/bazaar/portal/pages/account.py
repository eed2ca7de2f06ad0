"""Signing up, in and out.

Signing in exchanges the email and password for a token pair (the password grant)
and keeps the pair in the encrypted session cookie; the password itself is never
kept, logged or sent back into a form.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from bazaar.portal.access import AnySession, PortalDep
from bazaar.portal.client import ApiError, TokenPair
from bazaar.portal.csrf import verify_csrf
from bazaar.portal.forms import form_values
from bazaar.portal.problems import FormState
from bazaar.portal.rendering import safe_next, see_other
from bazaar.portal.session import Session

router = APIRouter(dependencies=[Depends(verify_csrf)])

SIGN_IN_FIELDS = ("email", "password")
REGISTER_FIELDS = ("email", "display_name", "password", "password_confirm")
MIN_PASSWORD = 8


def client_address(request: Request, trust_forwarded: bool) -> str | None:
    """The browser's address: the first ``X-Forwarded-For`` entry behind the gateway."""
    if trust_forwarded:
        first = request.headers.get("x-forwarded-for", "").split(",", 1)[0].strip()
        if first:
            return first[:100]
    return request.client.host if request.client else None


async def start_session(portal: PortalDep, session: Session, pair: TokenPair) -> None:
    """Keep ``pair`` in the session, with who the user is (one call to ``/api/auth/me``)."""
    session.sign_in(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        expires_at=pair.expires_at,
        user_id=pair.subject,
        email="",
        display_name="",
        roles=pair.roles,
    )
    me = await portal.client.call("GET", "/api/auth/me", session)
    session.user_id = str(me["id"])
    session.email = str(me["email"])
    session.display_name = str(me.get("display_name") or me["email"])
    session.roles = sorted(me.get("roles") or pair.roles)


@router.get("/sign-in", name="sign_in")
async def sign_in_page(request: Request, portal: PortalDep, next: str = "/") -> Response:
    return portal.pages.render(
        request, "account/sign_in.html", {"form": FormState(), "next": safe_next(next)}
    )


@router.post("/sign-in")
async def sign_in(request: Request, portal: PortalDep, session: AnySession) -> Response:
    values = await form_values(request)
    target = safe_next(values.get("next"))
    shown = {"email": values.get("email", "")}
    missing = {name: "Required." for name in SIGN_IN_FIELDS if not values.get(name)}
    if missing:
        form = FormState.invalid(shown, missing)
    else:
        try:
            pair = await portal.client.password_grant(
                values["email"],
                values["password"],
                client_address=client_address(request, portal.settings.trust_forwarded_headers),
            )
            await start_session(portal, session, pair)
        except ApiError as exc:
            form = FormState.failed(exc.problem, shown, SIGN_IN_FIELDS)
        else:
            session.flash(f"Welcome back, {session.display_name}.", "success")
            return see_other(request, target)
    return portal.pages.render(request, "account/sign_in.html", {"form": form, "next": target})


@router.get("/register", name="register")
async def register_page(request: Request, portal: PortalDep, next: str = "/") -> Response:
    return portal.pages.render(
        request, "account/register.html", {"form": FormState(), "next": safe_next(next)}
    )


@router.post("/register")
async def register(request: Request, portal: PortalDep, session: AnySession) -> Response:
    values = await form_values(request)
    target = safe_next(values.get("next"))
    shown = {name: values.get(name, "") for name in ("email", "display_name")}
    errors = {name: "Required." for name in REGISTER_FIELDS if not values.get(name)}
    password = values.get("password", "")
    if password and len(password) < MIN_PASSWORD:
        errors["password"] = f"Use at least {MIN_PASSWORD} characters."
    if password and values.get("password_confirm") and values["password_confirm"] != password:
        errors["password_confirm"] = "The two passwords are not the same."
    if errors:
        form = FormState.invalid(shown, errors)
    else:
        try:
            await portal.client.call(
                "POST",
                "/api/auth/register",
                json={
                    "email": values["email"],
                    "password": password,
                    "display_name": values["display_name"],
                },
            )
            pair = await portal.client.password_grant(
                values["email"],
                password,
                client_address=client_address(request, portal.settings.trust_forwarded_headers),
            )
            await start_session(portal, session, pair)
        except ApiError as exc:
            form = FormState.failed(exc.problem, shown, REGISTER_FIELDS)
        else:
            session.flash(f"Welcome to Bazaar, {session.display_name}!", "success")
            return see_other(request, target)
    return portal.pages.render(request, "account/register.html", {"form": form, "next": target})


@router.post("/sign-out")
async def sign_out(request: Request, portal: PortalDep, session: AnySession) -> Response:
    for token in (session.refresh_token, session.access_token):
        if token:
            await portal.client.revoke(token)
    session.sign_out()
    session.flash("You are signed out.", "info")
    return see_other(request, "/")
