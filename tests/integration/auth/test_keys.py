"""Signing keys: published as a JWKS, rotated without invalidating tokens already issued."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import URL

from bazaar.auth.admin import rotate_signing_key
from bazaar.auth.keys import ENCRYPTED_PEM_HEADER, SigningKeyLocked, load_private_key
from bazaar.auth.models import SigningKey
from bazaar.kit.config import PlatformSettings
from bazaar.kit.db import transaction
from bazaar.kit.testing import wait_for
from tests.integration.auth.support import Auth, auth_settings, bearer, kid_of, running_auth


async def test_the_jwks_has_the_public_signing_key(auth: Auth) -> None:
    jwks = await auth.jwks()

    [key] = jwks["keys"]
    assert key["kty"] == "RSA"
    assert key["alg"] == "RS256"
    assert key["use"] == "sig"
    assert key["kid"]
    assert {"d", "p", "q", "dp", "dq", "qi"}.isdisjoint(key)


async def test_after_a_rotation_old_and_new_tokens_are_both_valid(auth: Auth) -> None:
    user, before = await auth.new_user()
    [old_kid] = await auth.kids()

    new_kid = await rotate_signing_key(auth.sessions, passphrase=None)

    await wait_for(lambda: _lists_both(auth, new_kid, old_kid), message="both kids published")
    after = await auth.login(user["email"])
    assert kid_of(before["access_token"]) == old_kid
    assert kid_of(after["access_token"]) == new_kid
    for tokens in (before, after):
        assert (await auth.me(tokens["access_token"])).status_code == 200
        assert (await auth.introspect(tokens["access_token"]))["active"] is True


async def _lists_both(auth: Auth, new_kid: str, old_kid: str) -> bool:
    return await auth.kids() == [new_kid, old_kid]


async def test_a_retired_key_leaves_the_jwks_once_its_tokens_have_expired(auth: Auth) -> None:
    [old_kid] = await auth.kids()
    new_kid = await rotate_signing_key(auth.sessions, passphrase=None)
    await wait_for(lambda: _lists_both(auth, new_kid, old_kid), message="both kids published")

    # Retired two days ago: every access token it signed is long expired.
    async with transaction(auth.sessions) as session:
        await session.execute(
            update(SigningKey)
            .where(SigningKey.kid == old_kid)
            .values(retired_at=datetime.now(UTC) - timedelta(days=2))
        )

    async def only_new() -> bool:
        return await auth.kids() == [new_kid]

    await wait_for(only_new, message="the retired key to leave the JWKS")


async def test_a_new_key_is_published_before_it_signs(
    auth_database: URL, platform_settings: PlatformSettings
) -> None:
    settings = auth_settings(auth_database, key_publish_delay_seconds=60)
    async with running_auth(settings, platform_settings) as auth:
        user, _ = await auth.new_user()
        [old_kid] = await auth.kids()

        new_kid = await rotate_signing_key(auth.sessions, passphrase=None)
        await wait_for(lambda: _lists_both(auth, new_kid, old_kid), message="new key published")

        tokens = await auth.login(user["email"])
        assert kid_of(tokens["access_token"]) == old_kid


async def test_a_key_rotated_elsewhere_is_found_on_first_sight(
    auth_database: URL, platform_settings: PlatformSettings
) -> None:
    # This replica would not re-read the keys for an hour on its own.
    settings = auth_settings(auth_database, key_reload_interval_seconds=3600)
    async with running_auth(settings, platform_settings) as auth:
        user, _ = await auth.new_user()
        new_kid = await rotate_signing_key(auth.sessions, passphrase=None)
        async with transaction(auth.sessions) as session:
            key = await session.scalar(select(SigningKey).where(SigningKey.kid == new_kid))
            assert key is not None
        now = int(time.time())
        # A token another replica signed with the new key a moment ago.
        token = jwt.encode(
            {
                "iss": auth.platform.auth_issuer,
                "aud": auth.platform.auth_audience,
                "sub": user["id"],
                "iat": now,
                "exp": now + 60,
                "jti": uuid.uuid4().hex,
                "roles": ["customer"],
            },
            key.private_key_pem,
            algorithm="RS256",
            headers={"kid": new_kid},
        )

        assert (await auth.http.get("/api/auth/me", headers=bearer(token))).status_code == 200
        assert new_kid in await auth.kids()


async def test_with_a_passphrase_the_database_holds_no_usable_private_key(
    auth_database: URL, platform_settings: PlatformSettings
) -> None:
    """Keys made and rotated with the passphrase are stored encrypted; the service signs
    with them, and a copy of the database alone opens none."""
    passphrase = "correct horse battery staple"
    settings = auth_settings(auth_database, signing_key_passphrase=passphrase)
    async with running_auth(settings, platform_settings) as auth:
        user, before = await auth.new_user()
        [first_kid] = await auth.kids()
        new_kid = await rotate_signing_key(auth.sessions, passphrase=passphrase.encode())
        await wait_for(lambda: _lists_both(auth, new_kid, first_kid), message="both published")
        after = await auth.login(user["email"])

        assert kid_of(after["access_token"]) == new_kid
        for tokens in (before, after):
            assert (await auth.me(tokens["access_token"])).status_code == 200
        async with transaction(auth.sessions) as session:
            stored = list((await session.scalars(select(SigningKey))).all())
        assert {key.kid for key in stored} == {first_kid, new_kid}
        for key in stored:
            assert key.private_key_pem.startswith(ENCRYPTED_PEM_HEADER)
            with pytest.raises(SigningKeyLocked):
                load_private_key(key.private_key_pem, None)
