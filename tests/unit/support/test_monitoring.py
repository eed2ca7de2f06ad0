"""The monitoring artefacts (deploy/prometheus/alerts.yml, deploy/grafana/bazaar.json) only
ask for metrics the code defines, and are well-formed."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
SOURCES = REPO / "src" / "bazaar"
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "bazaar.json"
SCRAPE_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"

# Counter("name", ...), Gauge(\n "name", ...), Histogram(...), Summary(...)
DEFINITION = re.compile(
    r"\b(Counter|Gauge|Histogram|Summary)\(\s*[\"']([a-zA-Z_:][a-zA-Z0-9_:]*)[\"']"
)
METRIC = re.compile(r"\bbazaar_[a-z0-9_]+\b")
# Series Prometheus itself makes, not the code.
BUILT_IN = {"up"}


def exposed_names() -> set[str]:
    """Every series name the code's prometheus_client metrics expose."""
    names: set[str] = set()
    for path in SOURCES.rglob("*.py"):
        for kind, name in DEFINITION.findall(path.read_text()):
            if kind == "Counter":
                base = name.removesuffix("_total")
                names |= {f"{base}_total", f"{base}_created"}
            elif kind == "Gauge":
                names.add(name)
            elif kind == "Histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_created"}
            else:
                names |= {name, f"{name}_sum", f"{name}_count", f"{name}_created"}
    return names


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]
    for variable in dashboard["templating"]["list"]:
        if variable.get("type") == "query":
            queries.append((f"${variable['name']}", variable["definition"]))
    return queries


def test_the_code_defines_the_platforms_metrics() -> None:
    names = exposed_names()
    # Sanity of the scan itself: one of each kind, spread over kit and services.
    assert {
        "bazaar_http_requests_total",
        "bazaar_http_request_duration_seconds_bucket",
        "bazaar_outbox_backlog",
        "bazaar_consumer_lag_messages",
        "bazaar_support_ingestion_lag_seconds_bucket",
        "bazaar_support_events_ingested_total",
        "bazaar_support_problems",
    } <= names


@pytest.mark.parametrize(
    ("where", "expression"),
    [(rule["alert"], rule["expr"]) for rule in alert_rules()] + dashboard_queries(),
)
def test_every_metric_a_query_uses_exists_in_the_code(where: str, expression: str) -> None:
    used = set(METRIC.findall(expression))
    missing = used - exposed_names() - BUILT_IN
    assert not missing, f"{where} uses metrics no code defines: {sorted(missing)}"
    assert used or "up{" in expression, f"{where} asks for no Bazaar metric"


def test_the_alerts_cover_what_operations_must_hear_about() -> None:
    rules = alert_rules()
    names = {rule["alert"] for rule in rules}
    assert {
        "BazaarServiceDown",
        "BazaarHttp5xxRateHigh",
        "BazaarOutboxBacklogGrowing",
        "BazaarConsumerLagHigh",
        "BazaarDeadLetters",
        "BazaarSagasStuck",
        "BazaarPaymentFailureRateHigh",
    } <= names
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert re.fullmatch(r"\d+[smh]", str(rule.get("for", "0m"))), rule["alert"]


def test_the_stuck_sagas_alert_names_every_kind_of_stuck_saga() -> None:
    from bazaar.support.repository import PROBLEM_KINDS

    stuck = next(rule for rule in alert_rules() if rule["alert"] == "BazaarSagasStuck")
    kinds = set(re.search(r'kind=~"([^"]+)"', stuck["expr"]).group(1).split("|"))  # type: ignore[union-attr]
    assert kinds <= set(PROBLEM_KINDS)
    assert kinds == {
        kind for kind in PROBLEM_KINDS if kind.endswith(("_stuck", "_outcome", "_unanswered"))
    }


def test_the_dashboard_is_a_grafana_dashboard_with_the_panels_asked_for() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    titles = {panel["title"] for panel in dashboard["panels"]}
    assert dashboard["uid"] and dashboard["schemaVersion"] >= 36
    assert {
        "Requests by route and status",
        "Latency by route (p50, p95, p99)",
        "Order sagas started and finished by outcome",
        "Outbox backlog",
        "Consumer lag",
        "Payment outcomes",
        "Bids accepted",
        "History ingestion lag (event to visible)",
    } <= titles
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}"
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24


def test_the_scrape_config_loads_the_alerts_and_names_jobs_as_they_expect() -> None:
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert {"bazaar-gateway", "bazaar-support", "bazaar-orders"} <= jobs
    assert all(job.startswith("bazaar-") for job in jobs)
