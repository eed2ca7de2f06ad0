"""Identity events published by the auth service on ``bazaar.auth``."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from bazaar.contracts.base import Message

TOPIC = "bazaar.auth"


class UserRegistered(Message):
    TYPE = "bazaar.auth.user.registered"
    TOPIC = TOPIC

    user_id: UUID
    email: str
    display_name: str
    roles: list[str]
    created_at: datetime


class UserRolesChanged(Message):
    TYPE = "bazaar.auth.user.roles_changed"
    TOPIC = TOPIC

    user_id: UUID
    roles: list[str]
    changed_by: str


class AccessTokenRevoked(Message):
    """An access token was revoked; gateways stop honouring it."""

    TYPE = "bazaar.auth.token.revoked"
    TOPIC = TOPIC

    jti: str
    user_id: str
    expires_at: datetime
