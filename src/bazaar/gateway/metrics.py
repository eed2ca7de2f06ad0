"""The gateway's Prometheus metrics, kept cheap: label children are looked up once.

Requests are counted by route prefix (the service, or the gateway's own endpoint)
and status, with a latency histogram by prefix; the health of each upstream
replica is a gauge that changes only when the replica is ejected or comes back.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class GatewayMetrics:
    """One set of metrics per gateway app, in its own registry (tests run several apps)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "bazaar_gateway_requests_total",
            "Requests answered by the gateway, by route prefix and status",
            ["prefix", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "bazaar_gateway_request_duration_seconds",
            "Time from a request's arrival to its response head, by route prefix",
            ["prefix"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.upstream_healthy = Gauge(
            "bazaar_gateway_upstream_healthy",
            "1 while an upstream replica takes traffic, 0 while it is ejected",
            ["pool", "replica"],
            registry=self.registry,
        )
        self.upstream_retries = Counter(
            "bazaar_gateway_upstream_retries_total",
            "Requests tried again on another replica after a connection failure",
            ["pool"],
            registry=self.registry,
        )
        self._request_children: dict[tuple[str, int], Counter] = {}
        self._latency_children: dict[str, Histogram] = {}

    def observe(self, prefix: str, status: int, seconds: float) -> None:
        counter = self._request_children.get((prefix, status))
        if counter is None:
            counter = self.requests.labels(prefix, str(status))
            self._request_children[(prefix, status)] = counter
        counter.inc()
        histogram = self._latency_children.get(prefix)
        if histogram is None:
            histogram = self.latency.labels(prefix)
            self._latency_children[prefix] = histogram
        histogram.observe(seconds)

    def set_replica_health(self, pool: str, replica: str, healthy: bool) -> None:
        self.upstream_healthy.labels(pool, replica).set(1 if healthy else 0)
