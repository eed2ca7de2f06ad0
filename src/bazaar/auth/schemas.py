"""The auth service's HTTP API models (API.md, "Auth")."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, EmailStr, Field, StringConstraints

Role = Literal["customer", "seller", "support", "admin"]

MIN_PASSWORD_LENGTH = 8
# Hashing is deliberately slow; an unbounded password would make it slower still.
MAX_PASSWORD_LENGTH = 1024

Password = Annotated[str, Field(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH)]
DisplayName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class UserCreate(BaseModel):
    email: EmailStr = Field(max_length=320)
    password: Password
    display_name: DisplayName


class UserRead(BaseModel):
    id: uuid.UUID
    email: str
    display_name: str
    roles: list[str]
    created_at: datetime


class UserPage(BaseModel):
    items: list[UserRead]
    next_cursor: str | None


class RolesUpdate(BaseModel):
    """The user's new roles; ``customer`` is kept whether listed or not."""

    roles: list[Role] = Field(max_length=10)


class TokenResponse(BaseModel):
    """RFC 6749 §5.1; client-credentials tokens come without a refresh token."""

    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int
    refresh_token: str | None = None


class OAuthErrorBody(BaseModel):
    """RFC 6749 §5.2."""

    error: str
    error_description: str | None = None


class Introspection(BaseModel):
    """RFC 7662 §2.2: ``{"active": false}`` alone for anything not currently valid."""

    active: bool
    sub: str | None = None
    email: str | None = None
    roles: list[str] | None = None
    exp: int | None = None
    iat: int | None = None
    jti: str | None = None
    # "Bearer" for an access token, "refresh_token" for a refresh token.
    token_type: str | None = None
    iss: str | None = None
    aud: str | None = None


class RevocationEntry(BaseModel):
    jti: str
    expires_at: int = Field(description="When the token expires anyway (Unix seconds)")
    seq: int


class RevocationFeed(BaseModel):
    """Revoked, not yet expired access tokens after a sequence number (for the gateway)."""

    items: list[RevocationEntry]
    cursor: int = Field(description="Pass as ?after= next time")
    has_more: bool = Field(description="More entries are waiting: ask again at once")


class Jwks(BaseModel):
    keys: list[dict[str, str]]
