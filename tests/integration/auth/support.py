"""A running auth service for tests, and the calls a client makes to it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from fastapi import FastAPI
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bazaar.auth.admin import ensure_service_client
from bazaar.auth.app import create_app
from bazaar.auth.settings import AuthSettings
from bazaar.kit.config import PlatformSettings
from bazaar.kit.db import transaction
from bazaar.kit.testing import running_app

ADMIN_EMAIL = "root@example.com"
ADMIN_PASSWORD = "bootstrap-admin-pw"
PASSWORD = "correct horse battery"


def auth_settings(database_url: URL, **overrides: Any) -> AuthSettings:
    """Settings for tests: a cheap argon2 (the real cost is irrelevant here), keys that
    are signed with as soon as they exist, and a bootstrap admin."""
    values: dict[str, Any] = {
        "database_url": database_url.render_as_string(hide_password=False),
        "argon2_time_cost": 1,
        "argon2_memory_cost_kib": 1024,
        "argon2_parallelism": 1,
        "key_publish_delay_seconds": 0,
        "key_reload_interval_seconds": 0.1,
        "revocation_poll_interval_seconds": 0.05,
        "bootstrap_admin_email": ADMIN_EMAIL,
        "bootstrap_admin_password": ADMIN_PASSWORD,
    }
    values.update(overrides)
    return AuthSettings(**values)


@dataclass
class Auth:
    """One running auth replica and a client that talks to it."""

    app: FastAPI
    http: httpx.AsyncClient
    platform: PlatformSettings

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        sessions: async_sessionmaker[AsyncSession] = self.app.state.sessions
        return sessions

    async def register(
        self, email: str | None = None, password: str = PASSWORD, display_name: str = "Test User"
    ) -> dict[str, Any]:
        email = email or f"user-{uuid.uuid4().hex[:8]}@example.com"
        response = await self.http.post(
            "/api/auth/register",
            json={"email": email, "password": password, "display_name": display_name},
        )
        assert response.status_code == 201, response.text
        user: dict[str, Any] = response.json()
        return user

    async def login_response(
        self, email: str, password: str = PASSWORD, address: str | None = None
    ) -> httpx.Response:
        headers = {"X-Forwarded-For": address} if address else {}
        return await self.http.post(
            "/api/auth/token",
            data={"grant_type": "password", "username": email, "password": password},
            headers=headers,
        )

    async def login(self, email: str, password: str = PASSWORD) -> dict[str, Any]:
        response = await self.login_response(email, password)
        assert response.status_code == 200, response.text
        tokens: dict[str, Any] = response.json()
        return tokens

    async def refresh(self, refresh_token: str) -> httpx.Response:
        return await self.http.post(
            "/api/auth/token", data={"grant_type": "refresh_token", "refresh_token": refresh_token}
        )

    async def new_user(self, **register: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """A registered user and a fresh token pair of theirs."""
        user = await self.register(**register)
        return user, await self.login(user["email"], register.get("password", PASSWORD))

    async def admin_token(self) -> str:
        return str((await self.login(ADMIN_EMAIL, ADMIN_PASSWORD))["access_token"])

    async def me(self, access_token: str) -> httpx.Response:
        return await self.http.get("/api/auth/me", headers=bearer(access_token))

    async def introspect(self, token: str) -> dict[str, Any]:
        response = await self.http.post("/api/auth/introspect", data={"token": token})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def revoke(self, token: str) -> httpx.Response:
        return await self.http.post("/api/auth/revoke", data={"token": token})

    async def jwks(self) -> dict[str, Any]:
        response = await self.http.get("/api/auth/jwks.json")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def kids(self) -> list[str]:
        return [key["kid"] for key in (await self.jwks())["keys"]]

    async def service_token(self, client_id: str = "gateway") -> str:
        """A client-credentials token of a service client (registered here if new)."""
        secret = f"{client_id}-secret"
        async with transaction(self.sessions) as session:
            await ensure_service_client(session, client_id, secret)
        response = await self.http.post(
            "/api/auth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": secret,
            },
        )
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    async def feed(self, **params: int) -> dict[str, Any]:
        """The revocation feed, read as the gateway does (with a service's token)."""
        response = await self.http.get(
            "/internal/revocations",
            params={name: str(value) for name, value in params.items()},
            headers=bearer(await self.service_token()),
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


def bearer(access_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token}"}


def kid_of(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def claims_of(token: str) -> dict[str, Any]:
    """The claims of a token, read without checking (tests check through the service)."""
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


@asynccontextmanager
async def running_auth(settings: AuthSettings, platform: PlatformSettings) -> AsyncIterator[Auth]:
    app = create_app(settings, platform)
    async with running_app(app) as http:
        yield Auth(app=app, http=http, platform=platform)
