"""The token endpoint: password logins, refresh-token rotation, client credentials."""

from __future__ import annotations

import base64

import jwt
import pytest
from jwt.algorithms import RSAAlgorithm

from bazaar.auth.admin import ensure_service_client
from bazaar.kit.db import transaction
from bazaar.kit.testing import wait_for
from tests.integration.auth.support import PASSWORD, Auth, bearer, claims_of, kid_of


async def test_a_password_login_gives_a_signed_access_token_and_a_refresh_token(
    auth: Auth,
) -> None:
    user = await auth.register("Token.Holder@example.com")

    response = await auth.login_response("token.holder@EXAMPLE.com")

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    tokens = response.json()
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 900
    assert tokens["refresh_token"]
    jwks = await auth.jwks()
    [jwk] = [key for key in jwks["keys"] if key["kid"] == kid_of(tokens["access_token"])]
    claims = jwt.decode(
        tokens["access_token"],
        RSAAlgorithm.from_jwk(jwk),
        algorithms=["RS256"],
        audience=auth.platform.auth_audience,
        issuer=auth.platform.auth_issuer,
    )
    assert claims["sub"] == user["id"]
    assert claims["email"] == "token.holder@example.com"
    assert claims["roles"] == ["customer"]
    assert claims["exp"] - claims["iat"] == 900
    assert claims["jti"]
    assert (await auth.me(tokens["access_token"])).json()["id"] == user["id"]


async def test_unknown_email_and_wrong_password_get_the_same_answer(auth: Auth) -> None:
    user = await auth.register()

    wrong_password = await auth.login_response(user["email"], "not the password")
    unknown_email = await auth.login_response("nobody@example.com", PASSWORD)

    assert wrong_password.status_code == unknown_email.status_code == 400
    assert wrong_password.json() == unknown_email.json()
    assert wrong_password.json()["error"] == "invalid_grant"


async def test_the_grant_type_is_required_and_must_be_known(auth: Auth) -> None:
    missing = await auth.http.post("/api/auth/token", data={"username": "a@example.com"})
    unknown = await auth.http.post("/api/auth/token", data={"grant_type": "authorization_code"})
    as_json = await auth.http.post(
        "/api/auth/token", json={"grant_type": "password", "username": "x", "password": "y"}
    )

    assert missing.status_code == 400
    assert missing.json()["error"] == "invalid_request"
    assert unknown.status_code == 400
    assert unknown.json()["error"] == "unsupported_grant_type"
    assert as_json.status_code == 400
    assert as_json.json()["error"] == "invalid_request"


async def test_a_refresh_token_rotates(auth: Auth) -> None:
    user, first = await auth.new_user()

    second = await auth.refresh(first["refresh_token"])

    assert second.status_code == 200, second.text
    pair = second.json()
    assert pair["refresh_token"] != first["refresh_token"]
    assert claims_of(pair["access_token"])["sub"] == user["id"]
    third = await auth.refresh(pair["refresh_token"])
    assert third.status_code == 200, third.text


async def test_reusing_a_spent_refresh_token_revokes_its_whole_family(auth: Auth) -> None:
    _, first = await auth.new_user()
    second = (await auth.refresh(first["refresh_token"])).json()

    reuse = await auth.refresh(first["refresh_token"])

    assert reuse.status_code == 400
    assert reuse.json()["error"] == "invalid_grant"
    # The thief's (or the owner's) newer token dies with the family...
    latest = await auth.refresh(second["refresh_token"])
    assert latest.status_code == 400
    assert latest.json()["error"] == "invalid_grant"
    # ...and so does the access token the family handed out last (revocations made in
    # the refusal reach the replicas' own checks within a poll, as they reach gateways).
    assert (await auth.introspect(second["access_token"])) == {"active": False}

    async def refused() -> bool:
        return (await auth.me(second["access_token"])).status_code == 401

    await wait_for(refused, timeout=1.0, message="the family's access token refused")


async def test_other_sessions_survive_a_revoked_family(auth: Auth) -> None:
    user, laptop = await auth.new_user()
    phone = await auth.login(user["email"])
    await auth.refresh(laptop["refresh_token"])

    await auth.refresh(laptop["refresh_token"])  # reuse: the laptop's family is revoked

    assert (await auth.refresh(phone["refresh_token"])).status_code == 200


async def test_an_unknown_refresh_token_is_an_invalid_grant(auth: Auth) -> None:
    response = await auth.refresh("no-such-token")

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


async def test_a_service_client_gets_a_service_token(auth: Auth) -> None:
    async with transaction(auth.sessions) as session:
        assert await ensure_service_client(session, "orders", "orders-secret-1")

    by_form = await auth.http.post(
        "/api/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "orders",
            "client_secret": "orders-secret-1",
        },
    )
    basic = base64.b64encode(b"orders:orders-secret-1").decode()
    by_basic = await auth.http.post(
        "/api/auth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )

    for response in (by_form, by_basic):
        assert response.status_code == 200, response.text
        body = response.json()
        assert "refresh_token" not in body
        claims = claims_of(body["access_token"])
        assert claims["sub"] == "client:orders"
        assert claims["roles"] == ["service"]
        assert "email" not in claims
    introspection = await auth.introspect(by_form.json()["access_token"])
    assert introspection["active"] is True
    assert introspection["sub"] == "client:orders"


async def test_a_wrong_client_secret_is_an_invalid_client(auth: Auth) -> None:
    async with transaction(auth.sessions) as session:
        await ensure_service_client(session, "payments", "payments-secret")

    for client_id, secret in [("payments", "guess"), ("nobody", "payments-secret")]:
        response = await auth.http.post(
            "/api/auth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": secret,
            },
        )
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_client"


async def test_ensure_service_client_is_idempotent_and_follows_a_new_secret(auth: Auth) -> None:
    async with transaction(auth.sessions) as session:
        assert await ensure_service_client(session, "auctions", "first-secret")
    async with transaction(auth.sessions) as session:
        assert not await ensure_service_client(session, "auctions", "first-secret")
    async with transaction(auth.sessions) as session:
        assert await ensure_service_client(session, "auctions", "second-secret")

    async def token_with(secret: str) -> int:
        response = await auth.http.post(
            "/api/auth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "auctions",
                "client_secret": secret,
            },
        )
        return response.status_code

    assert await token_with("first-secret") == 401
    assert await token_with("second-secret") == 200


@pytest.mark.parametrize("grant", ["password", "refresh_token"])
async def test_a_grant_without_its_parameters_is_an_invalid_request(auth: Auth, grant: str) -> None:
    response = await auth.http.post("/api/auth/token", data={"grant_type": grant})

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


async def test_a_service_token_is_not_a_user(auth: Auth) -> None:
    async with transaction(auth.sessions) as session:
        await ensure_service_client(session, "support", "support-secret")
    token = (
        await auth.http.post(
            "/api/auth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "support",
                "client_secret": "support-secret",
            },
        )
    ).json()["access_token"]

    assert (await auth.http.get("/api/auth/me", headers=bearer(token))).status_code == 403
