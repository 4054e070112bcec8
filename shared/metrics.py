"""Every Prometheus metric of every Stratus process, named in this one module
(docs/architecture.md).

Each role records what it does through the small functions below, so metric names, labels and
buckets live here and nowhere else. Every label has a bounded set of values: a route's
template (never a raw path), an HTTP method, a status code, a message type, an action's
command type, an outcome. ``/metrics`` serves the default registry (shared/ops_http.py), which
also carries prometheus-client's process and Python collectors.

Two families are not counted as things happen but read when scraped, by custom collectors:
the database pools of the process (``asyncpg`` keeps the numbers; reading them is free) and
the state of the cluster (hosts up/down, servers by status), which a conductor refreshes
from the database periodically (conductor/cluster_state.py) rather than on every scrape.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import asyncpg
from prometheus_client import REGISTRY, Counter, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

PREFIX = "stratus"

# no ``*_created`` series beside every counter and histogram: they double the series a
# scrape carries, and Prometheus does not need them to compute rates (the function is untyped)
disable_created_metrics()  # type: ignore[no-untyped-call]

# --- gateway: HTTP requests ----------------------------------------------------------------

HTTP_REQUESTS = Counter(
    f"{PREFIX}_http_requests",
    "HTTP requests answered by the gateway, by route template, method and status.",
    ["route", "method", "status"],
)
HTTP_DURATION = Histogram(
    f"{PREFIX}_http_request_duration_seconds",
    "Time the gateway took to answer, by route template and method.",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

# --- both buses: messages ------------------------------------------------------------------

MESSAGES_PUBLISHED = Counter(
    f"{PREFIX}_bus_messages_published",
    "Messages this process published (taken by the broker), by message type.",
    ["type"],
)
MESSAGES_CONSUMED = Counter(
    f"{PREFIX}_bus_messages_consumed",
    "Messages this process handled and acknowledged, by message type.",
    ["type"],
)
MESSAGES_REDELIVERED = Counter(
    f"{PREFIX}_bus_messages_redelivered",
    "Messages whose handler failed and that were queued again, by message type.",
    ["type"],
)
MESSAGES_DEAD_LETTERED = Counter(
    f"{PREFIX}_bus_messages_dead_lettered",
    "Messages given up on (unparsable, or failed max_redeliveries times), by message type.",
    ["type"],
)
UNPARSABLE = "unparsable"  # the type label of a message that does not parse

# --- compute agent: actions ----------------------------------------------------------------

ACTION_DURATION = Histogram(
    f"{PREFIX}_agent_action_duration_seconds",
    "Time the hypervisor work of a command took, by command type and outcome "
    "(success; failure: the driver refused and it was reported; error: unexpected, redelivered).",
    ["action", "outcome"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0),
)

# --- conductor: scheduler ------------------------------------------------------------------

SCHEDULER_DURATION = Histogram(
    f"{PREFIX}_scheduler_duration_seconds",
    "Time one scheduling decision took (query and claim), by outcome "
    "(placed, no_valid_host, gone: the server was deleted meanwhile, error).",
    ["outcome"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
SCHEDULER_FAILURES = Counter(
    f"{PREFIX}_scheduler_failures",
    "Scheduling decisions that found no host, by reason.",
    ["reason"],
)


def message_published(message_type: str) -> None:
    MESSAGES_PUBLISHED.labels(message_type).inc()


def message_consumed(message_type: str) -> None:
    MESSAGES_CONSUMED.labels(message_type).inc()


def message_redelivered(message_type: str) -> None:
    MESSAGES_REDELIVERED.labels(message_type).inc()


def message_dead_lettered(message_type: str) -> None:
    MESSAGES_DEAD_LETTERED.labels(message_type).inc()


def action_done(action: str, outcome: str, seconds: float) -> None:
    ACTION_DURATION.labels(action, outcome).observe(seconds)


def scheduled(outcome: str, started: float) -> None:
    """One scheduling decision that began at ``started`` (``time.perf_counter()``) is over."""
    SCHEDULER_DURATION.labels(outcome).observe(time.perf_counter() - started)
    if outcome == "no_valid_host":
        SCHEDULER_FAILURES.labels(outcome).inc()


# --- collectors read at scrape time -------------------------------------------------------


class PoolCollector(Collector):
    """The connections of every pool this process opened (shared/db/pool.py), summed:
    open (in use and idle) and the most it may open."""

    def __init__(self) -> None:
        self._pools: list[asyncpg.Pool] = []

    def track(self, pool: asyncpg.Pool) -> None:
        self._pools = [p for p in self._pools if not p.is_closing()]
        self._pools.append(pool)

    def collect(self) -> Iterator[Metric]:
        live = [p for p in self._pools if not p.is_closing()]
        if not live:
            return
        idle = sum(p.get_idle_size() for p in live)
        connections = GaugeMetricFamily(
            f"{PREFIX}_db_pool_connections",
            "Open database connections of this process's pools, in use or idle.",
            labels=["state"],
        )
        connections.add_metric(["in_use"], sum(p.get_size() for p in live) - idle)
        connections.add_metric(["idle"], idle)
        yield connections
        yield GaugeMetricFamily(
            f"{PREFIX}_db_pool_max_connections",
            "The most connections this process's pools may open.",
            value=sum(p.get_max_size() for p in live),
        )


@dataclass(frozen=True)
class ClusterCounts:
    """Hosts by state (``up``/``down``) and servers by v2 status, as the database has them."""

    hosts: Mapping[str, int]
    servers: Mapping[str, int]
    at: float = field(default_factory=time.time)


class ClusterStateCollector(Collector):
    """The cluster's last counted state: nothing until a conductor of this process counted.

    A new count replaces the old one whole, so a status nobody is in any more disappears
    instead of lingering at its last value."""

    def __init__(self) -> None:
        self.counts: ClusterCounts | None = None

    def update(self, counts: ClusterCounts) -> None:
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        counts = self.counts
        if counts is None:
            return
        yield _family(
            f"{PREFIX}_compute_hosts", "Compute hosts by state (up, down).", "state", counts.hosts
        )
        yield _family(
            f"{PREFIX}_servers", "Servers (not deleted) by v2 status.", "status", counts.servers
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_cluster_state_updated_timestamp_seconds",
            "When the host and server counts were last read from the database.",
            value=counts.at,
        )


def _family(name: str, documentation: str, label: str, values: Mapping[str, int]) -> Metric:
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for value, count in sorted(values.items()):
        family.add_metric([value], count)
    return family


POOLS = PoolCollector()
CLUSTER_STATE = ClusterStateCollector()
REGISTRY.register(POOLS)
REGISTRY.register(CLUSTER_STATE)
