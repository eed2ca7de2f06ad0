"""Sandbox settings (environment prefix ``BAZAAR_PSP_SANDBOX_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class PspSandboxSettings(BaseSettings):
    """Not a :class:`~bazaar.kit.config.ServiceSettings`: the sandbox has no database."""

    model_config = SettingsConfigDict(env_prefix="BAZAAR_PSP_SANDBOX_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8099
    # The ledger (ledger.jsonl) lives here; one process per directory (it is locked).
    data_dir: Path = Path("data/psp_sandbox")
    # How long the "answers late" card (4000 0000 0000 0259) keeps a charge's answer back.
    slow_card_delay_seconds: float = Field(default=30.0, ge=0)
    # Callers send ``Authorization: Bearer <api_key>`` on /v1; empty turns the check off.
    api_key: SecretStr = SecretStr("sk_test_bazaar")
