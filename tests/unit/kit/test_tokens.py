"""Access-token verification refuses every forgery and accepts what auth signs."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from bazaar.kit.errors import InvalidToken
from bazaar.kit.testing import TokenIssuer
from bazaar.kit.tokens import JwksCache, RevocationList, TokenVerifier, bearer_token


@pytest.fixture(scope="module")
def issuer() -> TokenIssuer:
    return TokenIssuer()


def verifier_for(issuer: TokenIssuer, revocations: RevocationList | None = None) -> TokenVerifier:
    jwks = JwksCache("http://127.0.0.1:9/never-fetched")
    jwks.set_keys(issuer.jwks())
    return TokenVerifier(
        jwks, issuer=issuer.issuer, audience=issuer.audience, revocations=revocations
    )


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


async def test_a_token_signed_by_auth_names_its_caller(issuer: TokenIssuer) -> None:
    token = issuer.mint("user-1", ["customer", "seller"], email="a@example.com")
    principal = await verifier_for(issuer).verify(token)
    assert principal.subject == "user-1"
    assert principal.roles == {"customer", "seller"}
    assert principal.email == "a@example.com"
    assert principal.has_any(["seller"])
    assert not principal.is_service


def tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["roles"] = ["admin"]
    return f"{header}.{b64(claims)}.{signature}"


def alg_none(issuer: TokenIssuer) -> str:
    claims = jwt.decode(issuer.mint(), options={"verify_signature": False})
    return f"{b64({'alg': 'none', 'typ': 'JWT', 'kid': issuer.kid})}.{b64(claims)}."


def hs256_with_public_key(issuer: TokenIssuer) -> str:
    public_pem = issuer.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = jwt.decode(issuer.mint(roles=["admin"]), options={"verify_signature": False})
    header = {"alg": "HS256", "typ": "JWT", "kid": issuer.kid}
    signing_input = f"{b64(header)}.{b64(claims)}".encode()
    import hashlib
    import hmac

    signature = hmac.new(public_pem, signing_input, hashlib.sha256).digest()
    return f"{signing_input.decode()}.{base64.urlsafe_b64encode(signature).decode().rstrip('=')}"


def roles_not_a_list(issuer: TokenIssuer) -> str:
    claims = jwt.decode(issuer.mint(), options={"verify_signature": False})
    claims["roles"] = "admin"
    return jwt.encode(claims, issuer.private_key, algorithm="RS256", headers={"kid": issuer.kid})


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda i: tampered(i.mint()), id="tampered-payload"),
        pytest.param(alg_none, id="alg-none"),
        pytest.param(hs256_with_public_key, id="hs256-signed-with-public-key"),
        pytest.param(lambda i: i.mint(ttl=-60), id="expired"),
        pytest.param(lambda i: i.mint(aud="another-audience"), id="wrong-audience"),
        pytest.param(lambda i: i.mint(iss="https://evil.example"), id="wrong-issuer"),
        pytest.param(lambda i: TokenIssuer(i.issuer, i.audience).mint(), id="unknown-kid"),
        pytest.param(lambda i: "not.a.jwt", id="garbage"),
        pytest.param(roles_not_a_list, id="roles-not-a-list"),
    ],
)
async def test_forged_tokens_are_refused(issuer: TokenIssuer, forge: Any) -> None:
    with pytest.raises(InvalidToken):
        await verifier_for(issuer).verify(forge(issuer))


async def test_a_revoked_token_is_refused_even_after_it_was_cached(issuer: TokenIssuer) -> None:
    revocations = RevocationList()
    verifier = verifier_for(issuer, revocations)
    token = issuer.mint()
    principal = await verifier.verify(token)
    revocations.add(principal.token_id, principal.expires_at)
    with pytest.raises(InvalidToken):
        await verifier.verify(token)


async def test_a_cached_token_still_expires(issuer: TokenIssuer) -> None:
    verifier = verifier_for(issuer)
    token = issuer.mint(ttl=1)
    await verifier.verify(token)
    assert verifier.cached(token) is not None
    # Pretend the clock moved past exp plus leeway.
    verifier._cache[token] = verifier._cache[token].__class__(
        subject="x", roles=frozenset(), token_id="j", expires_at=int(time.time()) - 10
    )
    assert verifier.cached(token) is None


def test_revocations_are_forgotten_once_the_token_would_have_expired() -> None:
    revocations = RevocationList()
    revocations.add("old", int(time.time()) - 1)
    revocations.add("new", int(time.time()) + 60)
    revocations.prune()
    assert "old" not in revocations
    assert "new" in revocations


@pytest.mark.parametrize("header", ["Basic abc", "Bearer", "Bearer   ", "token"])
def test_authorization_headers_that_are_not_bearer_tokens_are_refused(header: str) -> None:
    with pytest.raises(InvalidToken):
        bearer_token(header)


def test_no_authorization_header_means_anonymous() -> None:
    assert bearer_token(None) is None
    assert bearer_token("Bearer abc") == "abc"
