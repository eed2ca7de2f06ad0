"""Gateway settings from the environment."""

from __future__ import annotations

import pytest

from bazaar.gateway.settings import GatewaySettings


def test_upstreams_are_json_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "BAZAAR_GATEWAY_UPSTREAMS",
        '{"auth": ["http://127.0.0.1:8101"], '
        '"catalog": ["http://127.0.0.1:8102", "http://127.0.0.1:8103"]}',
    )
    monkeypatch.setenv("BAZAAR_GATEWAY_PORT", "9000")
    monkeypatch.setenv("BAZAAR_GATEWAY_RATE_LIMIT_ENABLED", "false")
    settings = GatewaySettings()
    assert settings.upstreams == {
        "auth": ["http://127.0.0.1:8101"],
        "catalog": ["http://127.0.0.1:8102", "http://127.0.0.1:8103"],
    }
    assert settings.port == 9000
    assert settings.rate_limit_enabled is False


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BAZAAR_GATEWAY_UPSTREAMS", "BAZAAR_GATEWAY_PORT"):
        monkeypatch.delenv(name, raising=False)
    settings = GatewaySettings()
    assert settings.port == 8000
    assert settings.upstreams == {}
    assert settings.max_body_bytes == 1024 * 1024
    assert settings.routes_file is None
