"""Queries on ``servers`` for tasks nobody will finish: the reaper's (conductor/reaper.py).

A task is stale when it ran past its deadline (per task, else a default) or started a while
ago on a host that stopped heartbeating. ``task_started_at`` is kept by a trigger (migration
0009), so a stale task is one row and one stamp: the reaper acts on a server only if its
task and stamp are still the ones it found, which is how a report arriving meanwhile wins.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime

from shared.db.pool import Conn, Executor
from shared.db.records import LOCKED_SERVER_COLUMNS, LockedServer, StaleTask


async def find(
    conn: Executor,
    *,
    deadlines: Mapping[str, float],
    default_deadline_s: float,
    host_down_after_s: float,
    limit: int,
) -> list[StaleTask]:
    """Servers whose task is stale, oldest first: id, task_state, task_started_at, host,
    host_down (the host stopped heartbeating), deadline_s (the task's) and past_deadline
    (stale on its own, whatever the host). The grace of
    ``host_down_after_s`` keeps a task just sent to a host about to be marked up again from
    being reaped at once."""
    tasks = sorted(deadlines)
    rows = await conn.fetch(
        """SELECT s.id, s.task_state, s.task_started_at, s.host,
                  COALESCE(h.last_heartbeat < now() - make_interval(secs => $3), false)
                      AS host_down,
                  COALESCE(d.deadline, $4) AS deadline_s,
                  s.task_started_at < now() - make_interval(secs => COALESCE(d.deadline, $4))
                      AS past_deadline
             FROM servers s
             LEFT JOIN compute_hosts h ON h.name = s.host
             LEFT JOIN unnest($1::text[], $2::float8[]) AS d (task, deadline)
                    ON d.task = s.task_state
            WHERE s.task_state IS NOT NULL AND s.deleted_at IS NULL
              AND (s.task_started_at < now() - make_interval(secs => COALESCE(d.deadline, $4))
                   OR (h.last_heartbeat < now() - make_interval(secs => $3)
                       AND s.task_started_at < now() - make_interval(secs => $3)))
            ORDER BY s.task_started_at
            LIMIT $5""",
        tasks,
        [deadlines[t] for t in tasks],
        host_down_after_s,
        default_deadline_s,
        limit,
    )
    return [StaleTask.from_record(r) for r in rows]


async def lock_if_unchanged(
    conn: Conn, server_id: uuid.UUID, task: str, started_at: datetime
) -> LockedServer | None:
    """The server's row, locked, if it still runs ``task`` begun at ``started_at``;
    None when it moved on, or when another reaper holds it (``SKIP LOCKED``: never both)."""
    row = await conn.fetchrow(
        f"""SELECT {LOCKED_SERVER_COLUMNS} FROM servers
            WHERE id = $1 AND deleted_at IS NULL AND task_state = $2
              AND task_started_at = $3
              FOR UPDATE SKIP LOCKED""",
        server_id,
        task,
        started_at,
    )
    return None if row is None else LockedServer.from_record(row)


async def restart_deadline(conn: Executor, server_id: uuid.UUID) -> None:
    """Give the server's task a new deadline from now (its command was sent again)."""
    await conn.execute("UPDATE servers SET task_started_at = now() WHERE id = $1", server_id)
