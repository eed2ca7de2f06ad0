"""Settings: what every process reads from the environment, and the per-service base.

Two layers, both pydantic-settings:

* :class:`PlatformSettings` (prefix ``BAZAAR_``) is what all processes of one
  deployment share: where the broker is, who issues tokens, how to log.
* :class:`ServiceSettings` (prefix ``BAZAAR_<SERVICE>_``, set by each subclass) is one
  service's own: its database, its port, its client credentials.

Nothing reads the environment at import time; a process builds its settings once in
its composition root and hands them down.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class PlatformSettings(BaseSettings):
    """What every process of one deployment shares."""

    model_config = SettingsConfigDict(env_prefix="BAZAAR_", extra="ignore")

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    # tansu (the embedded broker) refuses the idempotent producer; real Kafka wants it.
    kafka_idempotent_producer: bool = False
    # Joining a consumer group takes about half the session timeout on tansu; the embedded
    # stack and the tests shorten it. Real Kafka refuses less than its group.min.session.timeout.ms.
    kafka_session_timeout_ms: int = 10_000
    kafka_heartbeat_interval_ms: int = 3_000
    # How long the broker may hold a consumer's fetch that finds nothing new. tansu answers
    # a waiting fetch only when this runs out (not when a message arrives), so it is the
    # wait a message may add at each hop of a saga, and every consumer polls this often
    # (CPU in the broker and the service, idle or not). Real Kafka answers as soon as data
    # arrives: there, 500 costs no latency and next to no CPU.
    kafka_fetch_max_wait_ms: int = Field(default=10, ge=0, le=10_000)
    # Partitions of every topic the platform creates. 4 is what tansu gives a topic it
    # auto-creates (a producer racing ahead after a broker restart), so both agree.
    kafka_topic_partitions: int = 4
    # Prepended to every topic name: lets several deployments (or test runs) share a cluster.
    topic_prefix: str = ""
    # Fault injection for tests of the platform's guarantees: every message is sent this
    # many times (consumers must absorb the copies). Never above 1 in production.
    chaos_duplicate_deliveries: int = 1
    auth_issuer: str = "https://bazaar.local/auth"
    auth_audience: str = "bazaar"
    # Where services fetch the signing keys; the gateway reaches auth directly instead.
    jwks_url: str = "http://127.0.0.1:8000/api/auth/jwks.json"
    gateway_url: str = "http://127.0.0.1:8000"
    log_format: Literal["json", "console"] = "json"
    log_level: str = "INFO"
    otlp_endpoint: str | None = None
    redis_url: str | None = None


class ServiceSettings(BaseSettings):
    """One service's own settings; subclasses set ``env_prefix`` to ``BAZAAR_<SERVICE>_``."""

    model_config = SettingsConfigDict(env_prefix="BAZAAR_SERVICE_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8001
    database_url: SecretStr = SecretStr("postgresql+asyncpg://postgres@127.0.0.1:5432/bazaar")
    # The most connections one process holds to its database (opened when needed, then
    # kept).
    database_pool_size: int = 20
    # Client-credentials identity for calls through the gateway (empty: the service makes none).
    client_id: str = ""
    client_secret: SecretStr = SecretStr("")
