"""Signing-key rules: thumbprint kids, which key signs, how long a retired key is kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from bazaar.auth.keys import (
    ENCRYPTED_PEM_HEADER,
    PublishedKey,
    SigningKeyLocked,
    choose_signing_kid,
    generate_signing_key,
    jwk_thumbprint,
    jwks_retention,
    load_private_key,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
DELAY = timedelta(seconds=5)


def key(kid: str, age_seconds: float, retired_seconds_ago: float | None = None) -> PublishedKey:
    retired = None if retired_seconds_ago is None else NOW - timedelta(seconds=retired_seconds_ago)
    return PublishedKey(
        kid=kid, created_at=NOW - timedelta(seconds=age_seconds), retired_at=retired
    )


def test_the_kid_is_the_rfc_7638_thumbprint() -> None:
    # The example of RFC 7638 §3.1.
    jwk = {
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSo"
        "c_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_"
        "FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4"
        "vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }

    assert jwk_thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_a_generated_key_is_rsa_2048_named_by_its_thumbprint() -> None:
    new = generate_signing_key()

    private = serialization.load_pem_private_key(new.private_key_pem.encode(), password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    assert private.key_size == 2048
    assert new.kid == jwk_thumbprint(new.public_jwk)
    assert new.public_jwk["kid"] == new.kid
    assert new.public_jwk["alg"] == "RS256"
    assert "d" not in new.public_jwk


def test_nothing_signs_without_keys() -> None:
    assert choose_signing_kid([], NOW, DELAY) is None


def test_a_lone_fresh_key_signs_at_once() -> None:
    assert choose_signing_kid([key("first", 0)], NOW, DELAY) == "first"


def test_a_new_key_signs_once_it_has_been_published_for_the_delay() -> None:
    old = key("old", 3600, retired_seconds_ago=2)
    young = key("new", 2)
    settled = key("new", 6)

    assert choose_signing_kid([young, old], NOW, DELAY) == "old"
    assert choose_signing_kid([settled, key("old", 3600, retired_seconds_ago=6)], NOW, DELAY) == (
        "new"
    )


def test_quick_rotations_sign_with_the_key_published_longest() -> None:
    keys = [key("c", 1), key("b", 2, retired_seconds_ago=1), key("a", 3, retired_seconds_ago=2)]

    assert choose_signing_kid(keys, NOW, DELAY) == "a"


def test_without_a_delay_the_active_key_signs() -> None:
    keys = [key("new", 0), key("old", 3600, retired_seconds_ago=0)]

    assert choose_signing_kid(keys, NOW, timedelta(0)) == "new"


def test_a_retired_key_outlives_every_token_it_may_have_signed() -> None:
    retention = jwks_retention(900, publish_delay_seconds=5, reload_interval_seconds=2)

    # It may sign for up to the publish delay after retirement, then its tokens live 900 s.
    assert retention >= timedelta(seconds=900 + 5)
    assert retention <= timedelta(seconds=900 + 5 + 120)


def test_a_key_made_with_a_passphrase_opens_only_with_it() -> None:
    new = generate_signing_key(b"s3cret passphrase")

    assert new.private_key_pem.startswith(ENCRYPTED_PEM_HEADER)
    opened = load_private_key(new.private_key_pem, b"s3cret passphrase")
    assert jwk_thumbprint(RSAAlgorithm.to_jwk(opened.public_key(), as_dict=True)) == new.kid
    with pytest.raises(SigningKeyLocked, match="set BAZAAR_AUTH_SIGNING_KEY_PASSPHRASE"):
        load_private_key(new.private_key_pem, None)
    with pytest.raises(SigningKeyLocked, match="does not open"):
        load_private_key(new.private_key_pem, b"another one")


def test_a_key_stored_before_there_was_a_passphrase_still_opens() -> None:
    old = generate_signing_key()

    assert isinstance(load_private_key(old.private_key_pem, b"added later"), rsa.RSAPrivateKey)
