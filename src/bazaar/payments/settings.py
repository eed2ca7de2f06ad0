"""Payments settings (environment prefix ``BAZAAR_PAYMENTS_``)."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from bazaar.kit.config import ServiceSettings


class PaymentsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="BAZAAR_PAYMENTS_", extra="ignore")

    port: int = 8104
    database_url: SecretStr = SecretStr(
        "postgresql+asyncpg://postgres@127.0.0.1:5432/bazaar_payments"
    )

    # The payment provider (the sandbox in development).
    psp_url: str = "http://127.0.0.1:8099"
    psp_api_key: SecretStr = SecretStr("sk_test_bazaar")
    # The deadline of one provider call; a charge not answered by then has an unknown
    # outcome and is found out by asking the provider.
    provider_timeout_seconds: float = Field(default=5.0, gt=0)
    # Tries of one call within a round when the provider fails transiently (a 5xx, a
    # refused connection), with the same idempotency key and doubling backoff.
    provider_tries: int = Field(default=3, ge=1, le=10)
    provider_retry_backoff_seconds: float = Field(default=0.2, ge=0)

    # This replica charges, refunds and reconciles (the background processor). With
    # false it only takes HTTP requests and commands and leaves the work to others.
    process_payments: bool = True
    # How often the processor looks for due work when nothing woke it.
    processor_poll_seconds: float = Field(default=1.0, gt=0)
    processor_batch_size: int = Field(default=20, ge=1, le=500)
    # How long a claimed payment is reserved for the replica that claimed it; a replica
    # that dies mid-call leaves the claim to expire and another one takes the work over.
    claim_lease_seconds: float = Field(default=30.0, gt=0)
    # First and longest wait before the provider is asked again about an unknown outcome
    # or after a round that could not reach it.
    recheck_first_seconds: float = Field(default=1.0, gt=0)
    recheck_max_seconds: float = Field(default=60.0, gt=0)
    # Rounds of charge sends that could not reach the provider before a payment the
    # provider confirms it never charged is given up as ``processing_error``.
    max_charge_rounds: int = Field(default=8, ge=1)
    # Keys the fingerprint of a card in an Idempotency-Key record (empty: the provider's
    # API key), so that no unkeyed hash of a card number is ever stored.
    card_fingerprint_key: SecretStr = SecretStr("")

    @model_validator(mode="after")
    def _lease_outlasts_a_call(self) -> PaymentsSettings:
        # A round is cut off at its deadline (its outcome is then unknown and found out
        # later), so the lease is safe whatever happens; but a round must have room for
        # a lookup and a send, or no charge could ever finish.
        if self.round_deadline_seconds() < 2 * self.provider_timeout_seconds:
            raise ValueError(
                "claim_lease_seconds is too short: a round (80% of the lease) must fit "
                "two provider calls (2 x provider_timeout_seconds)"
            )
        return self

    def round_deadline_seconds(self) -> float:
        """How long one round may take: the lease, less a margin to record the outcome."""
        return self.claim_lease_seconds * 0.8
