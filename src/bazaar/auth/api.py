"""Auth routes (``/api/auth``) and the gateway's revocation feed (``/internal``).

Parse, call the service, shape the answer. The OAuth endpoints (token, introspect,
revoke) take ``application/x-www-form-urlencoded`` and answer errors as RFC 6749
§5.2 says; the others speak JSON and problem+json like every service.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Annotated
from urllib.parse import unquote_plus

from fastapi import APIRouter, Depends, Form, Query, Request, status
from fastapi.responses import JSONResponse, Response

from bazaar.auth import service
from bazaar.auth.errors import InvalidClient, InvalidRequest, OAuthError, UnsupportedGrantType
from bazaar.auth.schemas import (
    Introspection,
    Jwks,
    OAuthErrorBody,
    RevocationFeed,
    RolesUpdate,
    TokenResponse,
    UserCreate,
    UserPage,
    UserRead,
)
from bazaar.auth.service import AuthContext, IssuedTokens, RevokedAccessToken
from bazaar.auth.settings import AuthSettings
from bazaar.kit.http import DbSession, require_roles
from bazaar.kit.pagination import Page
from bazaar.kit.tokens import ALL_ROLES, ROLE_SERVICE, Principal, RevocationList

router = APIRouter(prefix="/api/auth", tags=["auth"])
# Not under /api: the gateway never routes it to the outside; it polls it itself.
internal_router = APIRouter(prefix="/internal", include_in_schema=False)

# RFC 6749 §5.1: token responses must not be cached.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
MAX_FORM_FIELD = 4096

AnyUser = Annotated[Principal, Depends(require_roles(*sorted(ALL_ROLES)))]
SupportStaff = Annotated[Principal, Depends(require_roles("support", "admin"))]
Admin = Annotated[Principal, Depends(require_roles("admin"))]
# The platform's own services (client-credentials tokens): the gateway reads the feed.
Service = Annotated[Principal, Depends(require_roles(ROLE_SERVICE))]
FormField = Annotated[str | None, Form(max_length=MAX_FORM_FIELD)]

OAUTH_ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": OAuthErrorBody, "description": "RFC 6749 §5.2 error"},
    401: {"model": OAuthErrorBody, "description": "invalid_client"},
    429: {"description": "Too many failed logins (problem+json, with Retry-After)"},
}


async def auth_context(request: Request) -> AuthContext:
    context: AuthContext = request.app.state.auth
    return context


async def auth_settings(request: Request) -> AuthSettings:
    settings: AuthSettings = request.app.state.auth_settings
    return settings


Context = Annotated[AuthContext, Depends(auth_context)]
Settings = Annotated[AuthSettings, Depends(auth_settings)]


def oauth_error_response(error: OAuthError) -> JSONResponse:
    return JSONResponse(
        error.oauth_body(), status_code=error.status, headers={**NO_STORE, **error.headers()}
    )


def client_address(request: Request, trust_forwarded_for: bool) -> str:
    """The caller's address: the first ``X-Forwarded-For`` entry (the gateway puts the
    real peer there), else the peer of this connection."""
    if trust_forwarded_for:
        forwarded = request.headers.get("x-forwarded-for", "")
        first = forwarded.split(",", 1)[0].strip()
        if first:
            return first[:100]
    return request.client.host if request.client else "unknown"


def basic_client_credentials(authorization: str | None) -> tuple[str, str] | None:
    """``(client_id, client_secret)`` from ``Authorization: Basic`` (RFC 6749 §2.3.1)."""
    if authorization is None:
        return None
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidClient("The Basic credentials are malformed") from exc
    client_id, separator, client_secret = decoded.partition(":")
    if not separator:
        raise InvalidClient("The Basic credentials are malformed")
    return unquote_plus(client_id), unquote_plus(client_secret)


def revoke_locally(request: Request, revoked: list[RevokedAccessToken]) -> None:
    """Refuse the revoked tokens in this replica at once (others learn within a poll)."""
    revocations: RevocationList = request.app.state.revocations
    for token in revoked:
        revocations.add(token.jti, token.expires_at)


@router.post("/register", response_model=UserRead, status_code=status.HTTP_201_CREATED)
async def register(data: UserCreate, session: DbSession, context: Context) -> UserRead:
    """A new customer account; the email is unique whatever its case."""
    return await service.register_user(session, context.passwords, data)


@router.post("/token", response_model=TokenResponse, responses=OAUTH_ERRORS)
async def issue_token(
    request: Request,
    session: DbSession,
    context: Context,
    settings: Settings,
    grant_type: FormField = None,
    username: FormField = None,
    password: FormField = None,
    refresh_token: FormField = None,
    client_id: FormField = None,
    client_secret: FormField = None,
    scope: FormField = None,
) -> Response:
    """OAuth 2.0 token endpoint: ``password``, ``refresh_token`` and ``client_credentials``."""
    try:
        if grant_type == "password":
            if not username or password is None:
                raise InvalidRequest("username and password are required")
            issued = await service.login_with_password(
                session,
                context,
                email=username,
                password=password,
                address=client_address(request, settings.trust_forwarded_for),
            )
        elif grant_type == "refresh_token":
            if not refresh_token:
                raise InvalidRequest("refresh_token is required")
            issued = await service.exchange_refresh_token(session, context, refresh_token)
        elif grant_type == "client_credentials":
            credentials = basic_client_credentials(request.headers.get("authorization"))
            if credentials is None:
                if not client_id or not client_secret:
                    raise InvalidClient("client_id and client_secret are required")
                credentials = (client_id, client_secret)
            issued = await service.authenticate_client(
                session, context, client_id=credentials[0], client_secret=credentials[1]
            )
        elif not grant_type:
            raise InvalidRequest("grant_type is required")
        else:
            raise UnsupportedGrantType(f"grant_type {grant_type[:50]!r} is not supported")
    except OAuthError as error:
        # Answered rather than raised, so the transaction commits what the refusal
        # did: a failed login is counted, a reused refresh token's family stays revoked.
        return oauth_error_response(error)
    return token_response(issued)


def token_response(issued: IssuedTokens) -> JSONResponse:
    body = TokenResponse(
        access_token=issued.access_token,
        expires_in=issued.expires_in,
        refresh_token=issued.refresh_token,
    )
    return JSONResponse(body.model_dump(exclude_none=True), headers=NO_STORE)


@router.post(
    "/introspect",
    response_model=Introspection,
    response_model_exclude_none=True,
    responses={400: {"model": OAuthErrorBody}},
)
async def introspect(
    session: DbSession,
    context: Context,
    token: FormField = None,
    token_type_hint: FormField = None,
) -> Introspection:
    """RFC 7662: whether a token (access or refresh) is currently valid, and whose it is."""
    if not token:
        raise InvalidRequest("token is required")
    return await service.introspect(session, context, token)


@router.post("/revoke", responses={400: {"model": OAuthErrorBody}})
async def revoke(
    request: Request,
    session: DbSession,
    context: Context,
    token: FormField = None,
    token_type_hint: FormField = None,
) -> Response:
    """RFC 7009: revoke an access token, or a refresh token with its family. Always 200."""
    if not token:
        raise InvalidRequest("token is required")
    revoked = await service.revoke_token(session, context, token)
    revoke_locally(request, revoked)
    return Response(status_code=status.HTTP_200_OK, headers=NO_STORE)


@router.get("/me", response_model=UserRead)
async def me(caller: AnyUser, session: DbSession) -> UserRead:
    return await service.get_user(session, caller.subject)


@router.get("/users", response_model=UserPage)
async def find_users(
    _: SupportStaff,
    session: DbSession,
    page: Page,
    email: Annotated[
        str | None, Query(max_length=320, description="The email, or its beginning")
    ] = None,
) -> UserPage:
    """Users by email (exact or prefix, case-insensitive), in email order."""
    return await service.find_users(session, email, page)


@router.put("/users/{user_id}/roles", response_model=UserRead)
async def set_roles(
    user_id: uuid.UUID, data: RolesUpdate, caller: Admin, request: Request, session: DbSession
) -> UserRead:
    """Set a user's roles; ``customer`` always stays. Roles taken away hold at once."""
    user, revoked = await service.change_roles(session, user_id, data.roles, caller.subject)
    revoke_locally(request, revoked)
    return user


@router.get("/jwks.json", response_model=Jwks)
async def jwks(context: Context) -> JSONResponse:
    """The public keys that verify access tokens, by ``kid``."""
    return JSONResponse(context.keyring.jwks())


@internal_router.get("/revocations", response_model=RevocationFeed)
async def revocations(
    _: Service,
    session: DbSession,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> RevocationFeed:
    """Revoked, not yet expired access tokens numbered above ``after`` (the gateway's poll,
    with its client-credentials token: who was signed out when is nobody else's business)."""
    return await service.revocation_feed(session, after, limit)
