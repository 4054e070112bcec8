"""deploy/prometheus and deploy/grafana stay consistent with the metrics the code defines
(neither Prometheus nor Grafana runs here, so they are checked by reading)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import Counter, Histogram

from shared import metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "stratus-dashboard.json"
_SAMPLE_SUFFIXES = ("_bucket", "_count", "_sum", "_total")


class _Pool:
    """Stands for an asyncpg pool: the collector only reads its sizes."""

    def is_closing(self) -> bool:
        return False

    def get_size(self) -> int:
        return 3

    def get_idle_size(self) -> int:
        return 1

    def get_max_size(self) -> int:
        return 10


def _families() -> set[str]:
    """Every metric family shared/metrics.py defines, the collected ones included."""
    defined = {
        family.name
        for value in vars(metrics).values()
        if isinstance(value, Counter | Histogram)
        for family in value.describe()
    }
    pools = metrics.PoolCollector()
    pools.track(_Pool())  # type: ignore[arg-type]
    cluster = metrics.ClusterStateCollector()
    cluster.update(metrics.ClusterCounts(hosts={"up": 1}, servers={"ACTIVE": 1}))
    collected = {family.name for c in (pools, cluster) for family in c.collect()}
    return defined | collected


def _family_of(sample: str) -> str:
    for suffix in _SAMPLE_SUFFIXES:
        if sample.endswith(suffix):
            return sample.removesuffix(suffix)
    return sample


def _exprs() -> list[str]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_every_metric_is_named_with_the_stratus_prefix() -> None:
    assert all(name.startswith("stratus_") for name in _families())


def test_the_dashboard_only_queries_metrics_that_exist() -> None:
    families = _families()
    used = {_family_of(name) for e in _exprs() for name in re.findall(r"stratus_\w+", e)}
    assert used, "the dashboard queries nothing"
    assert used - families == set()


def test_the_dashboard_shows_what_operators_watch() -> None:
    exprs = "\n".join(_exprs())
    for wanted in (
        "stratus_http_requests_total",
        "histogram_quantile(0.5, sum by (route, le) (rate(stratus_http_request_duration",
        "histogram_quantile(0.99, sum by (route, le) (rate(stratus_http_request_duration",
        'status=~"5.."',
        "stratus_bus_messages_published_total",
        "stratus_bus_messages_dead_lettered_total",
        "stratus_agent_action_duration_seconds_bucket",
        "stratus_scheduler_duration_seconds_bucket",
        "stratus_compute_hosts",
        "stratus_servers",
        "stratus_db_pool_connections",
    ):
        assert wanted in exprs, wanted


def test_prometheus_scrapes_every_role_of_the_compose_deployment() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = {
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    assert {"api1:8774", "api2:8774"} <= targets
    assert {"conductor1:9180", "conductor2:9180", "agent1:9180", "agent2:9180"} <= targets
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = set(compose["services"])
    assert {t.split(":")[0] for t in targets if not t.startswith("127.")} <= services


def test_the_kubernetes_example_keeps_only_annotated_stratus_pods() -> None:
    path = ROOT / "deploy" / "prometheus" / "prometheus-kubernetes.yml"
    (job,) = yaml.safe_load(path.read_text())["scrape_configs"]
    assert job["kubernetes_sd_configs"][0]["role"] == "pod"
    kept = {tuple(r["source_labels"]) for r in job["relabel_configs"] if r.get("action") == "keep"}
    assert ("__meta_kubernetes_pod_annotation_prometheus_io_scrape",) in kept


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard() -> None:
    grafana = ROOT / "deploy" / "grafana"
    sources = yaml.safe_load((grafana / "datasources" / "prometheus.yml").read_text())
    assert sources["datasources"][0]["type"] == "prometheus"
    providers = yaml.safe_load((grafana / "dashboards" / "stratus.yml").read_text())
    assert providers["providers"][0]["options"]["path"] == "/etc/grafana/provisioning"
