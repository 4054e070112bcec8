"""Counts of the cluster's state for the metrics: hosts up/down, servers by v2 status.

One round trip with two small ``GROUP BY``s; the server counts are grouped by (vm_state,
task_state) in the database and mapped to the v2 status here, with the rule the API uses
(shared/states.py), so the two can never disagree.
"""

from __future__ import annotations

from collections import Counter

from shared.db.pool import Executor
from shared.metrics import ClusterCounts
from shared.states import Status, v2_status

_COUNTS = """
SELECT 'host' AS kind,
       CASE WHEN up AND last_heartbeat >= now() - make_interval(secs => $1)
            THEN 'up' ELSE 'down' END AS vm_state,
       NULL::text AS task_state, count(*) AS n
  FROM compute_hosts
 GROUP BY 2
UNION ALL
SELECT 'server', vm_state, task_state, count(*)
  FROM servers
 WHERE deleted_at IS NULL
 GROUP BY vm_state, task_state
"""


async def cluster_counts(conn: Executor, host_down_after_s: float) -> ClusterCounts:
    """Hosts by state (``up``: heartbeating within ``host_down_after_s``, else ``down``) and
    servers that are not deleted by v2 status; both states of hosts are always there."""
    hosts: Counter[str] = Counter({"up": 0, "down": 0})
    servers: Counter[str] = Counter()
    for row in await conn.fetch(_COUNTS, host_down_after_s):
        if row["kind"] == "host":
            hosts[row["vm_state"]] += row["n"]
        else:
            servers[_status(row["vm_state"], row["task_state"])] += row["n"]
    return ClusterCounts(hosts=dict(hosts), servers=dict(servers))


def _status(vm_state: str, task_state: str | None) -> str:
    try:
        return v2_status(vm_state, task_state).value
    except ValueError:  # a task_state this version does not know
        return Status.UNKNOWN.value
