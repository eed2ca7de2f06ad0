"""Support settings (environment prefix ``BAZAAR_SUPPORT_``).

The client credentials (``BAZAAR_SUPPORT_CLIENT_ID`` / ``_CLIENT_SECRET``) are what the
action worker calls the owning services with, through the gateway; without them
actions are recorded but stay ``pending``.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from bazaar.kit.config import ServiceSettings


class SupportSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="BAZAAR_SUPPORT_", extra="ignore")

    port: int = 8106
    database_url: SecretStr = SecretStr(
        "postgresql+asyncpg://postgres@127.0.0.1:5432/bazaar_support"
    )

    # --- the history ---------------------------------------------------------------------
    # The consumer group that reads every topic into the history.
    consumer_group: str = "support"
    # Records taken from the broker per batch (one INSERT, one commit, one offset commit),
    # and how long a fetch waits for records when there are none.
    ingest_batch_size: int = Field(default=2000, ge=1, le=20_000)
    ingest_poll_ms: int = Field(default=100, ge=1, le=5_000)

    # --- problems: how long each saga may take before a person should look -----------------
    # The orders saga gives up by itself after about 4.5 minutes forward and 4 back.
    order_deadline_seconds: float = Field(default=600.0, gt=0)
    cancellation_deadline_seconds: float = Field(default=300.0, gt=0)
    # From an auction's close, or its latest settlement attempt, to settled or unsold.
    settlement_deadline_seconds: float = Field(default=300.0, gt=0)
    # A charge asked for with no answer at all, or ``processing`` with no final outcome.
    payment_deadline_seconds: float = Field(default=300.0, gt=0)
    # How long a dead letter is listed when nothing shows it was dealt with.
    dead_letter_window_seconds: float = Field(default=7 * 24 * 3600.0, gt=0)
    # How often the problems gauge (bazaar_support_problems) is recounted.
    problems_refresh_seconds: float = Field(default=15.0, gt=0)

    # --- corrective actions ----------------------------------------------------------------
    # How often the worker looks for pending actions when nothing woke it.
    action_poll_seconds: float = Field(default=1.0, gt=0)
    # Tries when the owning service cannot be reached (or answers 5xx/429), with doubling
    # waits from action_retry_seconds; then the action fails.
    action_attempts: int = Field(default=5, ge=1)
    action_retry_seconds: float = Field(default=2.0, ge=0)
    gateway_timeout_seconds: float = Field(default=10.0, gt=0)
