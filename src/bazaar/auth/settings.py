"""Auth settings (environment prefix ``BAZAAR_AUTH_``).

The bootstrap admin is read from ``BAZAAR_BOOTSTRAP_ADMIN_EMAIL`` and
``BAZAAR_BOOTSTRAP_ADMIN_PASSWORD`` (no ``AUTH_``: they name a deployment's first
admin, not a setting of this service's internals).
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from bazaar.kit.config import ServiceSettings


class AuthSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="BAZAAR_AUTH_", extra="ignore", validate_by_name=True, validate_by_alias=True
    )

    port: int = 8101
    database_url: SecretStr = SecretStr("postgresql+asyncpg://postgres@127.0.0.1:5432/bazaar_auth")

    # --- tokens -------------------------------------------------------------------------
    access_token_ttl_seconds: int = Field(default=15 * 60, gt=0)
    refresh_token_ttl_seconds: int = Field(default=30 * 24 * 3600, gt=0)

    # --- signing keys -------------------------------------------------------------------
    # How often each replica re-reads the keys (another replica or the CLI may rotate).
    key_reload_interval_seconds: float = Field(default=2.0, gt=0)
    # A new key is published in the JWKS this long before any replica signs with it, so
    # that every replica (and so every JWKS a gateway fetches) knows it first.
    key_publish_delay_seconds: float = Field(default=5.0, ge=0)
    # Encrypts the private half of every key this service makes (PKCS#8, AES-256-CBC with
    # a PBKDF2-derived key), so a copy of the database alone signs nothing. ``bazaar up``
    # keeps one in the data directory's secrets file; production passes it from its
    # secret store. Keys stored without one (made before it was set) stay readable.
    signing_key_passphrase: SecretStr | None = None

    # --- passwords (argon2id; the defaults are argon2-cffi's, RFC 9106's low-memory profile)
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_cost_kib: int = Field(default=65536, ge=8)
    argon2_parallelism: int = Field(default=4, ge=1)

    # --- login throttling (failed password logins, kept in the database) ---------------
    login_failure_window_seconds: int = Field(default=15 * 60, gt=0)
    login_max_failures_per_account: int = Field(default=5, ge=1)
    login_max_failures_per_address: int = Field(default=20, ge=1)
    # Take the client address from X-Forwarded-For (the gateway sets it to the real peer).
    trust_forwarded_for: bool = True

    # --- background work ----------------------------------------------------------------
    # How often this replica reads revocations made by others (for its own token checks).
    revocation_poll_interval_seconds: float = Field(default=0.5, gt=0)
    # How often expired refresh tokens, revocations, login failures and keys are deleted.
    housekeeping_interval_seconds: float = Field(default=300.0, gt=0)

    # --- the first admin ----------------------------------------------------------------
    bootstrap_admin_email: str | None = Field(
        default=None, validation_alias="BAZAAR_BOOTSTRAP_ADMIN_EMAIL"
    )
    bootstrap_admin_password: SecretStr | None = Field(
        default=None, validation_alias="BAZAAR_BOOTSTRAP_ADMIN_PASSWORD"
    )

    def key_passphrase(self) -> bytes | None:
        """:attr:`signing_key_passphrase` as the key functions take it."""
        if self.signing_key_passphrase is None:
            return None
        return self.signing_key_passphrase.get_secret_value().encode() or None
