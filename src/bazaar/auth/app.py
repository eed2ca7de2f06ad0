"""The auth service's composition root.

Startup, in order: the platform runtime (engine, sessions, readiness checks); the
first signing key if the database has none; this replica's copy of the keys; the
bootstrap admin if configured and no admin exists; the revocations made so far.
Then the background loops: the outbox relay, key reloads, revocation polling and
housekeeping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import Response
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bazaar.auth import api, service
from bazaar.auth.errors import OAuthError
from bazaar.auth.keys import KeyRing
from bazaar.auth.service import AuthContext, Passwords, ThrottlePolicy, TokenPolicy
from bazaar.auth.settings import AuthSettings
from bazaar.kit.config import PlatformSettings
from bazaar.kit.db import transaction
from bazaar.kit.http import create_service_app
from bazaar.kit.logging import get_logger
from bazaar.kit.runtime import service_runtime
from bazaar.kit.tokens import RevocationList, TokenVerifier

log = get_logger(__name__)

SERVICE = "auth"


def create_app(
    settings: AuthSettings | None = None, platform: PlatformSettings | None = None
) -> FastAPI:
    settings = settings or AuthSettings()
    platform = platform or PlatformSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with service_runtime(
            app, service=SERVICE, settings=settings, platform=platform
        ) as runtime:
            passphrase = settings.key_passphrase()
            keyring = KeyRing(
                runtime.sessions,
                access_ttl_seconds=settings.access_token_ttl_seconds,
                publish_delay_seconds=settings.key_publish_delay_seconds,
                reload_interval_seconds=settings.key_reload_interval_seconds,
                passphrase=passphrase,
            )
            revocations = RevocationList()
            # Auth verifies tokens with the keys it holds, not by fetching its own JWKS.
            verifier = TokenVerifier(
                keyring.jwks_cache,
                issuer=platform.auth_issuer,
                audience=platform.auth_audience,
                revocations=revocations,
            )
            runtime.verifier = verifier
            app.state.verifier = verifier
            app.state.revocations = revocations
            app.state.auth_settings = settings
            passwords = Passwords(service.password_hasher(settings))
            app.state.auth = AuthContext(
                keyring=keyring,
                passwords=passwords,
                tokens=TokenPolicy(
                    issuer=platform.auth_issuer,
                    audience=platform.auth_audience,
                    access_ttl_seconds=settings.access_token_ttl_seconds,
                    refresh_ttl_seconds=settings.refresh_token_ttl_seconds,
                ),
                throttle=ThrottlePolicy(
                    window_seconds=settings.login_failure_window_seconds,
                    max_failures_per_account=settings.login_max_failures_per_account,
                    max_failures_per_address=settings.login_max_failures_per_address,
                ),
                verifier=verifier,
            )

            if passphrase is None:
                log.warning(
                    "signing_keys_stored_unencrypted",
                    hint="set BAZAAR_AUTH_SIGNING_KEY_PASSPHRASE (bazaar up sets one)",
                )
            async with transaction(runtime.sessions) as session:
                await service.ensure_signing_key(session, passphrase)
            await keyring.reload()

            async def signing_key_loaded() -> None:
                if not keyring.kids:
                    raise RuntimeError("no signing key loaded")

            app.state.readiness_checks.append(signing_key_loaded)

            admin_password = settings.bootstrap_admin_password
            if settings.bootstrap_admin_email and admin_password is not None:
                async with transaction(runtime.sessions) as session:
                    await service.ensure_bootstrap_admin(
                        session,
                        passwords,
                        settings.bootstrap_admin_email,
                        admin_password.get_secret_value(),
                    )

            while await _follow_revocations_once(runtime.sessions, revocations):
                pass

            runtime.start_outbox_relay()
            runtime.start_background("signing-keys", keyring.keep_reloading())
            runtime.start_background(
                "revocations",
                _keep_following_revocations(
                    runtime.sessions, revocations, settings.revocation_poll_interval_seconds
                ),
            )
            runtime.start_background(
                "housekeeping", _keep_house(runtime.sessions, settings, keyring)
            )
            yield

    app = create_service_app(
        SERVICE,
        title="Bazaar auth",
        description="Accounts, roles, OAuth 2.0 tokens and the keys that sign them.",
        routers=[api.router, api.internal_router],
        lifespan=lifespan,
    )

    async def on_oauth_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, OAuthError)
        return api.oauth_error_response(exc)

    app.add_exception_handler(OAuthError, on_oauth_error)
    return app


async def _follow_revocations_once(
    sessions: async_sessionmaker[AsyncSession], revocations: RevocationList
) -> bool:
    async with transaction(sessions) as session:
        return await service.follow_revocations(session, revocations)


async def _keep_following_revocations(
    sessions: async_sessionmaker[AsyncSession], revocations: RevocationList, interval: float
) -> None:
    """Learn revocations made through other replicas, for this replica's own token checks."""
    last_prune = time.monotonic()
    while True:
        try:
            more = await _follow_revocations_once(sessions, revocations)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("revocations_poll_failed", error=repr(exc))
            more = False
        if time.monotonic() - last_prune > service.PRUNE_REVOCATIONS_EVERY_SECONDS:
            revocations.prune()
            last_prune = time.monotonic()
        if not more:
            await asyncio.sleep(interval)


async def _keep_house(
    sessions: async_sessionmaker[AsyncSession], settings: AuthSettings, keyring: KeyRing
) -> None:
    while True:
        await asyncio.sleep(settings.housekeeping_interval_seconds)
        try:
            async with transaction(sessions) as session:
                deleted = await service.delete_expired(
                    session,
                    login_window_seconds=settings.login_failure_window_seconds,
                    key_retention=keyring.retention,
                )
            log.info("housekeeping_done", **deleted)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("housekeeping_failed", error=repr(exc))
