"""Catalog settings (environment prefix ``BAZAAR_CATALOG_``)."""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from bazaar.kit.config import ServiceSettings


class CatalogSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="BAZAAR_CATALOG_", extra="ignore")

    port: int = 8102
    database_url: SecretStr = SecretStr(
        "postgresql+asyncpg://postgres@127.0.0.1:5432/bazaar_catalog"
    )
    # How often expired stock holds are looked for and their units returned.
    reservation_reaper_interval_seconds: float = 5.0
