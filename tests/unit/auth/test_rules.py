"""The auth rules that need no database: emails, roles, throttling arithmetic, passwords."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher

from bazaar.auth.errors import InvalidClient, InvalidGrant, LoginThrottled, UnsupportedGrantType
from bazaar.auth.service import (
    Passwords,
    hash_refresh_token,
    looks_like_jwt,
    normalize_email,
    normalize_roles,
    retry_after_seconds,
)
from bazaar.kit.errors import ValidationFailed

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=15)


def test_emails_compare_lower_cased() -> None:
    assert normalize_email("  Ada.Lovelace@Example.COM ") == "ada.lovelace@example.com"


def test_customer_is_always_a_role() -> None:
    assert normalize_roles([]) == ["customer"]
    assert normalize_roles(["seller", "admin", "seller"]) == ["admin", "customer", "seller"]


def test_unknown_roles_are_refused() -> None:
    with pytest.raises(ValidationFailed) as refused:
        normalize_roles(["seller", "wizard", "service"])

    assert refused.value.extra["errors"][0]["field"] == "roles"
    assert "service" in refused.value.detail
    assert "wizard" in refused.value.detail


def test_refresh_tokens_are_stored_as_sha256() -> None:
    digest = hash_refresh_token("a-token")

    assert len(digest) == 64
    assert digest == hash_refresh_token("a-token")
    assert digest != hash_refresh_token("another")


def test_access_tokens_are_told_from_refresh_tokens_by_shape() -> None:
    assert looks_like_jwt("aaa.bbb.ccc")
    assert not looks_like_jwt("opaque_random-string")


def test_under_the_limit_there_is_no_wait() -> None:
    failures = [NOW - timedelta(minutes=m) for m in range(4)]

    assert retry_after_seconds(failures, 5, WINDOW, NOW) is None


def test_at_the_limit_the_wait_ends_when_the_oldest_counted_failure_ages_out() -> None:
    # Newest first: 1, 2, 3, 4 and 10 minutes ago; the fifth frees in 5 minutes.
    failures = [NOW - timedelta(minutes=m) for m in (1, 2, 3, 4, 10)]

    assert retry_after_seconds(failures, 5, WINDOW, NOW) == 5 * 60


def test_the_wait_is_at_least_a_second() -> None:
    failures = [NOW - WINDOW] * 5

    assert retry_after_seconds(failures, 5, WINDOW, NOW) == 1


def test_errors_speak_their_protocols() -> None:
    assert InvalidGrant("nope").oauth_body() == {
        "error": "invalid_grant",
        "error_description": "nope",
    }
    assert InvalidGrant().status == 400
    assert UnsupportedGrantType().code == "unsupported_grant_type"
    assert InvalidClient().status == 401
    assert "WWW-Authenticate" in InvalidClient().headers()
    throttled = LoginThrottled(retry_after=42)
    assert throttled.status == 429
    assert throttled.headers() == {"Retry-After": "42"}


async def test_passwords_verify_only_their_own_hash() -> None:
    passwords = Passwords(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))

    stored = await passwords.hash("correct horse")

    assert stored.startswith("$argon2id$")
    assert await passwords.verify(stored, "correct horse")
    assert not await passwords.verify(stored, "wrong horse")
    assert not await passwords.verify(None, "correct horse")
    assert not await passwords.verify("not a hash", "correct horse")


async def test_a_hash_made_with_other_costs_needs_rehashing() -> None:
    cheap = Passwords(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    dearer = Passwords(PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1))

    stored = await cheap.hash("pw-pw-pw-pw")

    assert not cheap.needs_rehash(stored)
    assert dearer.needs_rehash(stored)
    assert await dearer.verify(stored, "pw-pw-pw-pw")
