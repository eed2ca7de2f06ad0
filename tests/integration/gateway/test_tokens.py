"""Token checks at the gateway: forged, stale, misaddressed, rotated and revoked tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time

import aiohttp
import jwt
import pytest

from bazaar.kit.testing import wait_for
from tests.integration.gateway.conftest import GatewayUnderTest, Keys, StartGateway, bearer
from tests.integration.gateway.standins import AuthStandIn, EchoUpstream, RunningServer

PUBLIC_PATH = "/api/catalog/items"
PRIVATE_PATH = "/api/auth/me"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(keys: Keys) -> dict[str, object]:
    token = keys.current.token(["admin"])
    return jwt.decode(token, options={"verify_signature": False})


def tampered(keys: Keys) -> str:
    """A valid token whose payload was edited to grant admin (signature unchanged)."""
    header, _, signature = keys.current.token(["customer"]).split(".")
    payload = _b64(json.dumps(_claims(keys)).encode())
    return f"{header}.{payload}.{signature}"


def alg_none(keys: Keys) -> str:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": keys.current.kid}).encode())
    return f"{header}.{_b64(json.dumps(_claims(keys)).encode())}."


def hs256_with_public_key(keys: Keys) -> str:
    """The classic key-confusion attack: HMAC keyed with the RSA public key's PEM."""
    header = {"alg": "HS256", "typ": "JWT", "kid": keys.current.kid}
    signing_input = (
        f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(_claims(keys)).encode())}"
    )
    mac = hmac.new(keys.current.public_pem(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


ATTACKS = {
    "tampered payload": tampered,
    "alg none": alg_none,
    "HS256 keyed with the public key": hs256_with_public_key,
    "expired": lambda keys: keys.current.token(
        ["admin"], exp=int(time.time()) - 60, iat=int(time.time()) - 960
    ),
    "wrong audience": lambda keys: keys.current.token(["admin"], aud="someone-else"),
    "wrong issuer": lambda keys: keys.current.token(["admin"], iss="https://evil.example/auth"),
    "unknown kid": lambda keys: keys.rogue.token(["admin"]),
    "no kid": lambda keys: jwt.encode(dict(_claims(keys)), keys.current.private, algorithm="RS256"),
    "no jti": lambda keys: keys.current.token(["admin"], jti=None),
    "garbage": lambda keys: "not.a.token",
}


@pytest.mark.parametrize("attack", list(ATTACKS))
async def test_forged_or_stale_tokens_are_refused_even_on_public_routes(
    echo_everywhere: tuple[GatewayUnderTest, EchoUpstream],
    keys: Keys,
    http: aiohttp.ClientSession,
    attack: str,
) -> None:
    gateway, upstream = echo_everywhere
    token = ATTACKS[attack](keys)
    for path in (PUBLIC_PATH, PRIVATE_PATH):
        async with http.get(gateway.api(path), headers=bearer(token)) as response:
            assert response.status == 401, f"{attack} on {path}"
            assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
            assert response.content_type == "application/problem+json"
            assert (await response.json())["code"] == "invalid_token"
    assert upstream.requests == 0


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "token abc"])
async def test_an_authorization_header_that_is_not_a_bearer_token_is_refused(
    echo_everywhere: tuple[GatewayUnderTest, EchoUpstream],
    http: aiohttp.ClientSession,
    header: str,
) -> None:
    gateway, _ = echo_everywhere
    async with http.get(gateway.api(PUBLIC_PATH), headers={"Authorization": header}) as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


async def test_a_valid_token_reaches_the_service_with_its_authorization(
    echo_everywhere: tuple[GatewayUnderTest, EchoUpstream],
    keys: Keys,
    http: aiohttp.ClientSession,
) -> None:
    gateway, _ = echo_everywhere
    token = keys.current.token(["customer"])
    async with http.get(gateway.api(PRIVATE_PATH), headers=bearer(token)) as response:
        assert response.status == 200
        # Services verify the token again: it is passed on unchanged.
        assert (await response.json())["headers"]["Authorization"] == f"Bearer {token}"


async def test_a_rotated_key_is_fetched_when_a_token_names_it(
    echo_everywhere: tuple[GatewayUnderTest, EchoUpstream],
    auth: tuple[AuthStandIn, RunningServer],
    keys: Keys,
    http: aiohttp.ClientSession,
) -> None:
    gateway, _ = echo_everywhere
    standin, _ = auth
    old_token = keys.current.token(["customer"])
    async with http.get(gateway.api(PRIVATE_PATH), headers=bearer(old_token)) as response:
        assert response.status == 200
    fetches_before = standin.jwks_fetches

    standin.keys = [keys.current, keys.next]  # auth rotates: a new key signs from now on
    new_token = keys.next.token(["customer"])

    async def new_key_accepted() -> bool:
        async with http.get(gateway.api(PRIVATE_PATH), headers=bearer(new_token)) as response:
            return response.status == 200

    # Refreshes are limited to one a second, so the first tries may come too early.
    await wait_for(new_key_accepted, timeout=5, interval=0.1, message="the rotated key")
    assert standin.jwks_fetches > fetches_before
    async with http.get(gateway.api(PRIVATE_PATH), headers=bearer(old_token)) as response:
        assert response.status == 200


async def test_a_revoked_token_is_refused_within_a_second(
    echo_everywhere: tuple[GatewayUnderTest, EchoUpstream],
    auth: tuple[AuthStandIn, RunningServer],
    keys: Keys,
    http: aiohttp.ClientSession,
) -> None:
    gateway, _ = echo_everywhere
    standin, _ = auth
    token = keys.current.token(["customer"])
    claims = jwt.decode(token, options={"verify_signature": False})
    async with http.get(gateway.api(PRIVATE_PATH), headers=bearer(token)) as response:
        assert response.status == 200  # verified, and now in the gateway's token cache

    standin.revoke(claims["jti"], claims["exp"])
    revoked_at = time.monotonic()

    async def refused() -> bool:
        async with http.get(gateway.api(PUBLIC_PATH), headers=bearer(token)) as response:
            return response.status == 401

    await wait_for(refused, timeout=1.0, interval=0.02, message="the revocation to apply")
    assert time.monotonic() - revoked_at < 1.0
    # Other tokens of the same user are unaffected.
    other = keys.current.token(["customer"], sub=claims["sub"])
    async with http.get(gateway.api(PRIVATE_PATH), headers=bearer(other)) as response:
        assert response.status == 200


async def test_the_gateway_reads_the_revocation_feed_with_its_own_service_token(
    auth: tuple[AuthStandIn, RunningServer],
    start_gateway: StartGateway,
    keys: Keys,
    http: aiohttp.ClientSession,
) -> None:
    """Auth answers the feed only to a service: the gateway asks with its client-credentials
    token, and a token auth no longer takes (a rotated key) is replaced at once."""
    standin, server = auth
    gateway = await start_gateway({"auth": [server.url]})
    await wait_for(lambda: standin.feed_polls > 0, message="a first poll of the feed")
    assert standin.tokens_issued == ["service-token-1"]
    assert standin.feed_refusals == 0

    standin.expire_tokens()
    polls = standin.feed_polls
    await wait_for(lambda: standin.feed_polls > polls, message="a poll with a new token")
    assert standin.tokens_issued == ["service-token-1", "service-token-2"]
    assert standin.feed_refusals == 1
    token = keys.current.token(["customer"])
    claims = jwt.decode(token, options={"verify_signature": False})
    standin.revoke(claims["jti"], claims["exp"])
    await wait_for(
        lambda: claims["jti"] in gateway.gateway.revocations,
        message="the revocation followed",
    )


async def test_without_credentials_the_feed_is_refused_and_the_gateway_says_so(
    auth: tuple[AuthStandIn, RunningServer],
    start_gateway: StartGateway,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO)
    standin, server = auth
    await start_gateway({"auth": [server.url]}, client_id="", client_secret="")
    await wait_for(lambda: standin.feed_refusals > 0, message="the feed refused")
    assert standin.feed_polls == 0
    assert standin.tokens_issued == []
    captured = capsys.readouterr()
    logged = caplog.text + captured.out + captured.err
    assert "revocation_feed_without_credentials" in logged
    assert "revocation_feed_failed" in logged
