"""Picking replicas, ejecting failing ones and bringing them back."""

from __future__ import annotations

from collections import Counter
from typing import Any

from bazaar.gateway.balancer import Balancer
from bazaar.gateway.metrics import GatewayMetrics
from bazaar.gateway.settings import GatewaySettings


def balancer(*urls: str, **values: Any) -> Balancer:
    settings = GatewaySettings(**values)
    return Balancer({"catalog": list(urls)}, settings=settings, metrics=GatewayMetrics())


def picked_url(pools: Balancer) -> str:
    replica = pools.pick("catalog")
    assert replica is not None
    return replica.url


def test_idle_replicas_take_turns() -> None:
    pools = balancer("http://a", "http://b", "http://c")
    picked = Counter(picked_url(pools) for _ in range(30))
    assert picked == Counter({"http://a": 10, "http://b": 10, "http://c": 10})


def test_the_least_busy_replica_is_preferred() -> None:
    pools = balancer("http://a", "http://b")
    a, _b = pools.pool("catalog").replicas
    a.outstanding = 5
    assert {picked_url(pools) for _ in range(4)} == {"http://b"}


def test_tried_replicas_are_excluded_and_an_unknown_pool_is_empty() -> None:
    pools = balancer("http://a", "http://b")
    a, b = pools.pool("catalog").replicas
    assert pools.pick("catalog", (a,)) is b
    assert pools.pick("catalog", (a, b)) is None
    assert pools.pick("payments") is None


def test_failed_checks_eject_and_good_ones_restore() -> None:
    pools = balancer("http://a", "http://b", unhealthy_after_failures=2, healthy_after_successes=2)
    a, _b = pools.pool("catalog").replicas
    pools.check_failed(a, "503")
    assert a.healthy
    pools.check_failed(a, "503")
    assert not a.healthy
    assert {picked_url(pools) for _ in range(4)} == {"http://b"}
    pools.check_passed(a)
    assert not a.healthy
    pools.check_passed(a)
    assert a.healthy


def test_a_refused_connection_ejects_at_once_a_broken_one_counts_once() -> None:
    pools = balancer("http://a", "http://b", unhealthy_after_failures=3)
    a, b = pools.pool("catalog").replicas
    pools.request_failed(b, ConnectionResetError())
    assert b.healthy
    pools.connection_refused(a, ConnectionRefusedError())
    assert not a.healthy
    sample = pools.metrics.registry.get_sample_value(
        "bazaar_gateway_upstream_healthy", {"pool": "catalog", "replica": "http://a"}
    )
    assert sample == 0


def test_when_every_replica_is_ejected_one_is_still_tried() -> None:
    """Health checks timing out on a saturated machine must not refuse every request."""
    pools = balancer("http://a", "http://b", unhealthy_after_failures=1)
    a, b = pools.pool("catalog").replicas
    pools.check_failed(a, "timeout")
    pools.check_failed(b, "timeout")
    assert pools.pick("catalog") in (a, b)
    assert pools.pick("catalog", (a,)) is b
    assert pools.pick("catalog", (a, b)) is None
    # A healthy replica is always preferred to an ejected one.
    pools.check_passed(b)
    assert {picked_url(pools) for _ in range(4)} == {"http://b"}
