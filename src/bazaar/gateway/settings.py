"""Gateway settings (environment prefix ``BAZAAR_GATEWAY_``).

``BAZAAR_GATEWAY_UPSTREAMS`` is JSON: pool name → base URLs of its replicas, e.g.
``{"auth": ["http://127.0.0.1:8101"], "catalog": ["http://127.0.0.1:8102"]}``. A pool
the route table names but the upstreams leave out is simply empty: its routes answer 503.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, IPvAnyNetwork, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

ONE_MIB = 1024 * 1024


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BAZAAR_GATEWAY_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8000
    # Processes sharing the port (SO_REUSEPORT), each a whole gateway with its own
    # pools, caches and in-memory rate limits (per process: set BAZAAR_REDIS_URL to
    # share them). Two keep up with a FastAPI service on a two-core machine.
    workers: int = 2
    upstreams: dict[str, list[str]] = Field(default_factory=dict)
    # None: the route table packaged with the gateway (bazaar/gateway/routes.yaml).
    routes_file: Path | None = None
    # Peers whose X-Forwarded-For is kept (the gateway appends the peer to it) instead of
    # replaced: proxies of our own in front of the gateway, and the portal, which calls the
    # API on behalf of browsers. CIDRs, e.g. ["10.0.0.0/8"]. Empty: trust nobody.
    trusted_proxies: list[IPvAnyNetwork] = Field(default_factory=list)
    # The pool whose replicas serve the signing keys and the revocation feed.
    auth_pool: str = "auth"
    # The gateway's client-credentials identity (a service client registered with auth;
    # `bazaar up` registers one): auth's revocation feed answers only services. Without
    # it the gateway cannot follow revocations, and says so at start and on every outage.
    client_id: str = ""
    client_secret: SecretStr = SecretStr("")

    # --- forwarding ---------------------------------------------------------------------
    # One try: the response head must start within this long after the request was
    # sent (the connection has connect_timeout_seconds to open). The body then streams
    # for as long as it flows (an event stream may stay open for hours).
    try_timeout_seconds: float = 10.0
    connect_timeout_seconds: float = 2.0
    # A response body that stalls this long is cut (None: never; event streams idle).
    body_idle_timeout_seconds: float | None = None
    max_tries: int = 3
    max_body_bytes: int = ONE_MIB
    # Request bodies up to this size (with a Content-Length) are read whole before
    # forwarding, so a failed try can be replayed; larger ones stream.
    buffered_body_bytes: int = 64 * 1024
    # Responses up to this size (with a Content-Length) go back in one write.
    buffered_response_bytes: int = 256 * 1024
    # Pooled keep-alive connections to the services, closed before the services'
    # own idle timeout (uvicorn: 5 s) so the gateway never reuses one they closed.
    upstream_connection_limit: int = 1000
    upstream_keepalive_seconds: float = 4.0

    # --- health of the replicas ---------------------------------------------------------
    health_check_interval_seconds: float = 1.0
    health_check_timeout_seconds: float = 1.0
    # Consecutive failed checks (or failed connections while proxying) that eject a replica.
    unhealthy_after_failures: int = 2
    # Consecutive good checks that bring an ejected replica back.
    healthy_after_successes: int = 1

    # --- tokens -------------------------------------------------------------------------
    revocation_poll_interval_seconds: float = 0.5
    jwks_min_refresh_seconds: float = 1.0
    token_cache_size: int = 100_000

    # --- rate limits (per user ``sub`` and per client address) --------------------------
    rate_limit_enabled: bool = True
    rate_limit_user_per_second: float = 2_000.0
    rate_limit_user_burst: int = 4_000
    rate_limit_address_per_second: float = 10_000.0
    rate_limit_address_burst: int = 20_000
    # With Redis (BAZAAR_REDIS_URL) the limits are fixed windows of this length,
    # allowing ``per_second * window`` requests (at least the burst) per window.
    rate_limit_window_seconds: int = 1
    rate_limit_redis_prefix: str = "bazaar:gateway:ratelimit:"

    # --- OpenAPI ------------------------------------------------------------------------
    openapi_cache_ttl_seconds: float = 30.0
