"""Auctions settings (environment prefix ``BAZAAR_AUCTIONS_``)."""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from bazaar.kit.config import ServiceSettings


class AuctionsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="BAZAAR_AUCTIONS_", extra="ignore")

    port: int = 8105
    database_url: SecretStr = SecretStr(
        "postgresql+asyncpg://postgres@127.0.0.1:5432/bazaar_auctions"
    )

    # Connections of the bid path's own asyncpg pool (besides database_pool_size for the
    # rest): bids beyond it wait for one, which is fine, as they queue for one row anyway.
    bid_pool_size: int = 10

    # The scheduler of every replica looks for auctions due to open or close this often;
    # an auction closes within this (plus a transaction) of its ends_at.
    scheduler_interval_seconds: float = 0.25
    # An auction still open this long after its ends_at (its row kept busy by late
    # bids, so SKIP LOCKED kept passing it over) is waited for rather than skipped.
    overdue_grace_seconds: float = 1.0

    # Settlement: how long a ChargePayment may go unanswered before it is sent again,
    # how long a payment reported as processing is waited for, and how many sends
    # before the saga gives up on that bidder and moves to the next.
    settlement_charge_timeout_seconds: float = 30.0
    settlement_processing_timeout_seconds: float = 120.0
    settlement_max_sends: int = 5

    # Move what startup allocated out of the cyclic collector's way (gc.freeze): a full
    # collection of a service's modules takes tens of milliseconds, a tail every bid feels.
    freeze_startup_objects: bool = True

    # Server-Sent Events: a comment line this often keeps idle connections open.
    stream_heartbeat_seconds: float = 15.0

    # Bids check that the payment method is the bidder's through the gateway
    # (``GET /api/payments/methods/{id}``); a confirmed pair is remembered this long.
    verify_payment_methods: bool = True
    payment_method_cache_seconds: float = 300.0
    # Where that check goes; empty: the platform's gateway_url.
    payment_methods_url: str = ""
