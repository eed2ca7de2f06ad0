"""Introspection (RFC 7662), revocation (RFC 7009) and the gateway's revocation feed."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert
from sqlalchemy.engine import URL

from bazaar.auth.models import RevokedToken
from bazaar.contracts import auth as contract
from bazaar.kit.config import PlatformSettings
from bazaar.kit.db import transaction
from bazaar.kit.testing import read_topic, wait_for
from tests.integration.auth.support import (
    Auth,
    auth_settings,
    bearer,
    claims_of,
    running_auth,
)


async def test_a_valid_access_token_is_active(auth: Auth) -> None:
    user, tokens = await auth.new_user()

    introspection = await auth.introspect(tokens["access_token"])

    claims = claims_of(tokens["access_token"])
    assert introspection["active"] is True
    assert introspection["sub"] == user["id"]
    assert introspection["email"] == user["email"]
    assert introspection["roles"] == ["customer"]
    assert introspection["jti"] == claims["jti"]
    assert introspection["exp"] == claims["exp"]
    assert introspection["iat"] == claims["iat"]
    assert introspection["token_type"] == "Bearer"


async def test_anything_else_is_inactive(auth: Auth) -> None:
    for token in ["garbage", "a.b.c", "x" * 300]:
        assert await auth.introspect(token) == {"active": False}

    missing = await auth.http.post("/api/auth/introspect", data={})
    assert missing.status_code == 400
    assert missing.json()["error"] == "invalid_request"


async def test_a_refresh_token_is_active_until_used(auth: Auth) -> None:
    user, tokens = await auth.new_user()

    before = await auth.introspect(tokens["refresh_token"])
    await auth.refresh(tokens["refresh_token"])
    after = await auth.introspect(tokens["refresh_token"])

    assert before["active"] is True
    assert before["sub"] == user["id"]
    assert before["token_type"] == "refresh_token"
    assert before["exp"] > time.time() + 29 * 24 * 3600
    assert after == {"active": False}


async def test_a_revoked_access_token_is_refused_and_announced(auth: Auth) -> None:
    user, tokens = await auth.new_user()
    jti = claims_of(tokens["access_token"])["jti"]

    response = await auth.revoke(tokens["access_token"])

    assert response.status_code == 200
    assert await auth.introspect(tokens["access_token"]) == {"active": False}
    refused = await auth.me(tokens["access_token"])
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    feed = await auth.feed(after=0)
    assert [item["jti"] for item in feed["items"]] == [jti]
    assert feed["items"][0]["expires_at"] == claims_of(tokens["access_token"])["exp"]
    assert feed["cursor"] == feed["items"][0]["seq"]
    seen = await read_topic(
        auth.platform,
        contract.TOPIC,
        until=lambda envelopes: any(e.type == contract.AccessTokenRevoked.TYPE for e in envelopes),
    )
    revoked = next(e for e in seen if e.type == contract.AccessTokenRevoked.TYPE)
    assert revoked.data["jti"] == jti
    assert revoked.data["user_id"] == user["id"]
    # The refresh token is untouched: revoking an access token is not a logout.
    assert (await auth.refresh(tokens["refresh_token"])).status_code == 200


async def test_a_revoked_refresh_token_cannot_be_used(auth: Auth) -> None:
    _, tokens = await auth.new_user()

    assert (await auth.revoke(tokens["refresh_token"])).status_code == 200

    response = await auth.refresh(tokens["refresh_token"])
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    # The access token issued with it goes too (RFC 7009 §2.1).
    assert await auth.introspect(tokens["access_token"]) == {"active": False}


async def test_revoking_anything_answers_200_and_records_a_token_once(auth: Auth) -> None:
    _, tokens = await auth.new_user()
    await auth.revoke(tokens["access_token"])

    for token in ["garbage", "a.b.c", tokens["access_token"]]:
        assert (await auth.revoke(token)).status_code == 200
    feed = await auth.feed()
    assert len(feed["items"]) == 1


async def test_the_feed_pages_by_sequence_and_skips_expired_entries(auth: Auth) -> None:
    now = datetime.now(UTC)
    async with transaction(auth.sessions) as session:
        await session.execute(
            insert(RevokedToken).values(
                jti="long-gone", subject="someone", expires_at=now - timedelta(minutes=5)
            )
        )
    tokens = [(await auth.new_user())[1]["access_token"] for _ in range(3)]
    for token in tokens:
        await auth.revoke(token)
    jtis = [claims_of(token)["jti"] for token in tokens]

    first = await auth.feed(limit=2)
    second = await auth.feed(after=first["cursor"])
    last = await auth.feed(after=second["cursor"])

    assert [item["jti"] for item in first["items"]] == jtis[:1]
    assert first["has_more"] is True
    assert [item["jti"] for item in second["items"]] == jtis[1:]
    assert second["has_more"] is False
    assert last == {"items": [], "cursor": second["cursor"], "has_more": False}


async def test_a_revocation_reaches_the_other_replicas(
    auth: Auth, auth_database: URL, platform_settings: PlatformSettings
) -> None:
    _, tokens = await auth.new_user()
    settings = auth_settings(auth_database, revocation_poll_interval_seconds=0.5)
    async with running_auth(settings, platform_settings) as other:
        assert (await other.me(tokens["access_token"])).status_code == 200

        await auth.revoke(tokens["access_token"])

        async def refused_by_other() -> bool:
            return (await other.me(tokens["access_token"])).status_code == 401

        await wait_for(refused_by_other, timeout=1.0, message="the other replica refuses it")


async def test_the_revocation_feed_answers_services_only(auth: Auth) -> None:
    """Who was signed out when is nobody else's business: anonymous callers and users
    (even admins) are refused; a service's client-credentials token reads it."""
    _, tokens = await auth.new_user()
    await auth.revoke(tokens["access_token"])

    anonymous = await auth.http.get("/internal/revocations")
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"].startswith("application/problem+json")
    not_a_token = await auth.http.get(
        "/internal/revocations", headers=bearer(tokens["refresh_token"])
    )
    assert not_a_token.status_code == 401
    for token in ((await auth.new_user())[1]["access_token"], await auth.admin_token()):
        forbidden = await auth.http.get("/internal/revocations", headers=bearer(token))
        assert forbidden.status_code == 403, forbidden.text
        assert forbidden.json()["code"] == "forbidden"

    feed = await auth.feed()
    assert [item["jti"] for item in feed["items"]] == [claims_of(tokens["access_token"])["jti"]]
