"""HTTP details of the auth API: the client address, Basic client credentials, settings."""

from __future__ import annotations

import base64

import pytest
from starlette.requests import Request

from bazaar.auth.api import basic_client_credentials, client_address
from bazaar.auth.errors import InvalidClient
from bazaar.auth.settings import AuthSettings


def request_from(peer: str, headers: dict[str, str]) -> Request:
    return Request(
        {
            "type": "http",
            "method": "POST",
            "path": "/api/auth/token",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "client": (peer, 4711),
        }
    )


def test_the_address_is_the_first_forwarded_one() -> None:
    request = request_from("10.1.1.1", {"X-Forwarded-For": " 203.0.113.9 , 10.0.0.1"})

    assert client_address(request, trust_forwarded_for=True) == "203.0.113.9"
    assert client_address(request, trust_forwarded_for=False) == "10.1.1.1"


def test_without_forwarding_the_address_is_the_peer() -> None:
    assert client_address(request_from("10.1.1.1", {}), trust_forwarded_for=True) == "10.1.1.1"
    empty = request_from("10.1.1.1", {"X-Forwarded-For": ""})
    assert client_address(empty, trust_forwarded_for=True) == "10.1.1.1"


def basic(raw: str) -> str:
    return "Basic " + base64.b64encode(raw.encode()).decode()


def test_basic_credentials_are_read_and_form_decoded() -> None:
    assert basic_client_credentials(basic("orders:s3cret")) == ("orders", "s3cret")
    assert basic_client_credentials(basic("orders:a%3Ab+c")) == ("orders", "a:b c")
    assert basic_client_credentials(None) is None
    assert basic_client_credentials("Bearer x.y.z") is None


@pytest.mark.parametrize("header", ["Basic !!!", basic("no-colon")])
def test_malformed_basic_credentials_are_an_invalid_client(header: str) -> None:
    with pytest.raises(InvalidClient):
        basic_client_credentials(header)


def test_the_bootstrap_admin_comes_from_its_own_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BAZAAR_BOOTSTRAP_ADMIN_EMAIL", "root@example.com")
    monkeypatch.setenv("BAZAAR_BOOTSTRAP_ADMIN_PASSWORD", "hunter2hunter2")
    monkeypatch.setenv("BAZAAR_AUTH_ACCESS_TOKEN_TTL_SECONDS", "60")

    settings = AuthSettings()

    assert settings.bootstrap_admin_email == "root@example.com"
    assert settings.bootstrap_admin_password is not None
    assert settings.bootstrap_admin_password.get_secret_value() == "hunter2hunter2"
    assert settings.access_token_ttl_seconds == 60
    assert settings.refresh_token_ttl_seconds == 30 * 24 * 3600
