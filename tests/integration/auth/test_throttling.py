"""Repeated failed logins, per account and per client address, get 429 with Retry-After."""

from __future__ import annotations

import uuid

from tests.integration.auth.support import PASSWORD, Auth


async def test_an_account_is_throttled_after_five_failures(auth: Auth) -> None:
    user = await auth.register()
    for _ in range(5):
        failed = await auth.login_response(user["email"], "wrong password", address="10.0.0.1")
        assert failed.status_code == 400

    # Even the right password, from another address: the account is what is guarded.
    throttled = await auth.login_response(user["email"], PASSWORD, address="10.0.0.2")

    assert throttled.status_code == 429
    assert throttled.headers["content-type"] == "application/problem+json"
    assert throttled.json()["code"] == "login_throttled"
    assert 0 < int(throttled.headers["retry-after"]) <= 15 * 60
    # Another account from the first address is not affected.
    other = await auth.register()
    assert (await auth.login_response(other["email"], address="10.0.0.1")).status_code == 200


async def test_unknown_accounts_are_throttled_like_known_ones(auth: Auth) -> None:
    for _ in range(5):
        await auth.login_response("ghost@example.com", "guess", address="10.0.1.1")

    response = await auth.login_response("GHOST@example.com", "guess", address="10.0.1.2")

    assert response.status_code == 429


async def test_a_successful_login_clears_the_account_count(auth: Auth) -> None:
    user = await auth.register()
    for _ in range(4):
        await auth.login_response(user["email"], "wrong password")
    assert (await auth.login_response(user["email"])).status_code == 200

    for _ in range(4):
        failed = await auth.login_response(user["email"], "wrong password")
        assert failed.status_code == 400


async def test_an_address_is_throttled_after_twenty_failures(auth: Auth) -> None:
    user = await auth.register()
    for _ in range(20):
        email = f"guess-{uuid.uuid4().hex[:8]}@example.com"
        failed = await auth.login_response(email, "guess", address="192.0.2.7")
        assert failed.status_code == 400

    from_there = await auth.login_response(user["email"], address="192.0.2.7, 10.0.0.9")
    from_elsewhere = await auth.login_response(user["email"], address="192.0.2.8")

    assert from_there.status_code == 429
    assert "retry-after" in from_there.headers
    assert from_elsewhere.status_code == 200


async def test_an_absurdly_long_username_is_just_a_failed_login(auth: Auth) -> None:
    response = await auth.login_response("x" * 2000 + "@example.com", "guess")

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
