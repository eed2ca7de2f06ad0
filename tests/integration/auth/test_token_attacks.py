"""Forged, altered, expired or misdirected access tokens are refused (401) at /api/auth/me."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from bazaar.auth.models import SigningKey
from bazaar.kit.db import transaction
from tests.integration.auth.support import Auth, bearer


class Forger:
    """Makes tokens with the service's real private key, so only the flaw under test differs."""

    def __init__(self, auth: Auth, key: SigningKey, subject: str) -> None:
        self.auth = auth
        self.key = key
        self.subject = subject

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.auth.platform.auth_issuer,
            "aud": self.auth.platform.auth_audience,
            "sub": self.subject,
            "iat": now,
            "exp": now + 300,
            "jti": uuid.uuid4().hex,
            "roles": ["customer"],
        }
        claims.update(overrides)
        return {name: value for name, value in claims.items() if value is not None}

    def sign(self, claims: dict[str, Any], *, kid: str | None = None, key: Any = None) -> str:
        return jwt.encode(
            claims,
            key or self.key.private_key_pem,
            algorithm="RS256",
            headers={"kid": kid or self.key.kid},
        )

    async def status(self, token: str) -> int:
        return (await self.auth.http.get("/api/auth/me", headers=bearer(token))).status_code


@pytest.fixture
async def forger(auth: Auth) -> Forger:
    user = await auth.register()
    async with transaction(auth.sessions) as session:
        key = await session.scalar(select(SigningKey).where(SigningKey.retired_at.is_(None)))
    assert key is not None
    return Forger(auth, key, user["id"])


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def test_a_well_made_token_passes(forger: Forger) -> None:
    # The control: everything below differs from this token in one way only.
    assert await forger.status(forger.sign(forger.claims())) == 200


async def test_a_tampered_payload_is_refused(forger: Forger) -> None:
    header, _, signature = forger.sign(forger.claims()).split(".")
    payload = b64(json.dumps(forger.claims(roles=["customer", "admin"])).encode())

    assert await forger.status(f"{header}.{payload}.{signature}") == 401


async def test_alg_none_is_refused(forger: Forger) -> None:
    header = b64(json.dumps({"alg": "none", "typ": "JWT", "kid": forger.key.kid}).encode())
    payload = b64(json.dumps(forger.claims()).encode())

    assert await forger.status(f"{header}.{payload}.") == 401


async def test_hs256_signed_with_the_public_key_is_refused(forger: Forger) -> None:
    private = serialization.load_pem_private_key(forger.key.private_key_pem.encode(), None)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": forger.key.kid}).encode())
    payload = b64(json.dumps(forger.claims()).encode())
    signature = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()

    assert await forger.status(f"{header}.{payload}.{b64(signature)}") == 401


@pytest.mark.parametrize(
    "flaw",
    [
        {"exp": int(time.time()) - 3600, "iat": int(time.time()) - 4000},
        {"aud": "someone-else"},
        {"iss": "https://evil.example/auth"},
        {"jti": None},
        {"exp": None},
        {"sub": None},
        {"roles": "admin"},
    ],
    ids=["expired", "wrong-aud", "wrong-iss", "no-jti", "no-exp", "no-sub", "roles-not-a-list"],
)
async def test_a_token_with_bad_claims_is_refused(forger: Forger, flaw: dict[str, Any]) -> None:
    assert await forger.status(forger.sign(forger.claims(**flaw))) == 401


async def test_an_unknown_kid_is_refused(forger: Forger) -> None:
    token = forger.sign(forger.claims(), kid="no-such-key")

    assert await forger.status(token) == 401


async def test_a_token_signed_by_another_key_is_refused(forger: Forger) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    assert await forger.status(forger.sign(forger.claims(), key=stranger)) == 401


async def test_a_token_for_a_user_that_does_not_exist_finds_nobody(forger: Forger) -> None:
    token = forger.sign(forger.claims(sub=str(uuid.uuid4())))

    assert await forger.status(token) == 404
