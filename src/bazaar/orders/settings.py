"""Orders settings (environment prefix ``BAZAAR_ORDERS_``).

The saga's timing is configurable per step: how long one try waits for its answer
(``*_DEADLINE_SECONDS``) and how many tries it gets (``*_ATTEMPTS``). The charge step
is the long one on purpose: a payment whose provider answer was lost stays
``processing`` for 30 s or more while payments asks the provider, and the order
should still end confirmed; ``ChargePayment`` is idempotent, so re-sending it only
asks again.
"""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from bazaar.kit.config import ServiceSettings
from bazaar.orders.saga import SagaTimings, Step, StepTiming


class OrdersSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="BAZAAR_ORDERS_", extra="ignore")

    port: int = 8103
    database_url: SecretStr = SecretStr(
        "postgresql+asyncpg://postgres@127.0.0.1:5432/bazaar_orders"
    )
    # Calls through the gateway (pricing a cart, checking a payment method).
    gateway_timeout_seconds: float = Field(default=5.0, gt=0)
    # How long a confirmed (buyer, payment method) pair is not asked again: a buyer pays
    # order after order with one card. Payments checks the method again when it charges.
    payment_method_cache_seconds: float = Field(default=60.0, ge=0)

    # The saga's timer: how often it looks for steps past their deadline, and how many
    # sagas one look drives.
    saga_timer_interval_seconds: float = Field(default=1.0, gt=0)
    saga_timer_batch: int = Field(default=100, ge=1)

    # How long the catalog holds an order's stock. Must outlast reserve + charge + commit.
    reservation_hold_seconds: int = Field(default=900, ge=1)

    reserve_deadline_seconds: float = Field(default=10.0, gt=0)
    reserve_attempts: int = Field(default=4, ge=1)
    # 6 x 30 s: three minutes for a charge whose answer is late (the lost-answer card).
    charge_deadline_seconds: float = Field(default=30.0, gt=0)
    charge_attempts: int = Field(default=6, ge=1)
    # The order is confirmed before its commit (see bazaar.orders.saga): 60 x 10 s, so a
    # catalog away for minutes does not turn a paid order into a refund.
    commit_deadline_seconds: float = Field(default=10.0, gt=0)
    commit_attempts: int = Field(default=60, ge=1)
    refund_deadline_seconds: float = Field(default=30.0, gt=0)
    refund_attempts: int = Field(default=6, ge=1)
    release_deadline_seconds: float = Field(default=10.0, gt=0)
    release_attempts: int = Field(default=6, ge=1)

    def saga_timings(self) -> SagaTimings:
        return {
            Step.RESERVING: StepTiming(self.reserve_deadline_seconds, self.reserve_attempts),
            Step.CHARGING: StepTiming(self.charge_deadline_seconds, self.charge_attempts),
            Step.COMMITTING: StepTiming(self.commit_deadline_seconds, self.commit_attempts),
            Step.REFUNDING: StepTiming(self.refund_deadline_seconds, self.refund_attempts),
            Step.RELEASING: StepTiming(self.release_deadline_seconds, self.release_attempts),
        }

    @model_validator(mode="after")
    def _hold_outlasts_the_forward_steps(self) -> OrdersSettings:
        timings = self.saga_timings()
        forward = sum(
            timings[step].deadline_seconds * timings[step].attempts
            for step in (Step.RESERVING, Step.CHARGING, Step.COMMITTING)
        )
        if self.reservation_hold_seconds <= forward:
            raise ValueError(
                f"reservation_hold_seconds ({self.reservation_hold_seconds}) must be longer "
                f"than reserving, charging and committing may take ({forward:.0f} s)"
            )
        return self
