"""Hosts up/down and servers by status for ``/metrics``, counted by each conductor.

Counting takes one query (shared/db/stats.py) that reads every live server row, so it is
not done per scrape, whose frequency the conductor does not choose (a scrape every second
by several Prometheus servers would mean as many queries): each conductor counts every
``interval_s`` and the collector serves the last count (shared/metrics.py). The numbers are
thus up to ``interval_s`` old; ``stratus_cluster_state_updated_timestamp_seconds`` says how
old. Every conductor exports the same counts: aggregate them with ``max``, never ``sum``.
"""

from __future__ import annotations

import asyncpg

from shared import metrics
from shared.db.stats import cluster_counts
from shared.periodic import Periodic

#: How often the counts are refreshed: a usual scrape interval.
INTERVAL_S = 15.0


class ClusterState:
    def __init__(
        self, pool: asyncpg.Pool, *, host_down_after_s: float, interval_s: float = INTERVAL_S
    ) -> None:
        self.pool = pool
        self.host_down_after_s = host_down_after_s
        self.interval_s = interval_s
        self._periodic = Periodic(
            "count hosts and servers for the metrics",
            self.refresh,
            interval_s=interval_s,
            tolerated=(OSError, asyncpg.PostgresError, asyncpg.InterfaceError),
            first_now=True,
        )

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    async def refresh(self) -> None:
        """Count now and publish the counts to the collector."""
        metrics.CLUSTER_STATE.update(await cluster_counts(self.pool, self.host_down_after_s))
