"""Portal settings (environment prefix ``BAZAAR_PORTAL_``).

The gateway's address comes from :class:`~bazaar.kit.config.PlatformSettings`
(``BAZAAR_GATEWAY_URL``). The session secret encrypts the session cookie; when it
is not set, one is generated at first start into ``data_dir`` and read from there
afterwards, so every replica sharing that directory (and every restart) keeps
accepting the cookies already given out.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    return Path.home() / ".local" / "state" / "bazaar" / "portal"


class PortalSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BAZAAR_PORTAL_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8107
    # Encrypts and authenticates the session cookie (any string; a Fernet key is used as is).
    session_secret: SecretStr | None = None
    # Where a generated session secret is kept when ``session_secret`` is not set.
    data_dir: Path = Field(default_factory=default_data_dir)
    session_cookie: str = "bazaar_session"
    # An idle session (no request that changed it) ends after this long: the refresh
    # token's own lifetime.
    session_max_age_seconds: int = Field(default=30 * 24 * 3600, gt=0)
    # The access token is renewed this long before it expires.
    refresh_margin_seconds: int = Field(default=60, ge=0)
    # A renewed token pair is handed to concurrent requests that still carry the old
    # refresh token for this long (refresh tokens rotate: a second use would end the session).
    refresh_grace_seconds: float = Field(default=30.0, ge=0)
    # Behind the gateway: X-Forwarded-Proto says whether the browser used HTTPS.
    trust_forwarded_headers: bool = True
    api_timeout_seconds: float = Field(default=10.0, gt=0)
    api_connection_limit: int = Field(default=200, gt=0)
    page_size: int = Field(default=24, ge=1, le=100)
    # Distinct items a basket may hold (it lives in the session cookie, at most 4 KiB).
    basket_max_lines: int = Field(default=20, ge=1, le=100)
