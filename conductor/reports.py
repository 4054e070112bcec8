"""Apply what agents report to PostgreSQL: the only way a server's state follows its host.

A report is applied only if it is legal now: the server is on the reporting host and is still
running the task the report finishes. Anything else (a redelivered report, a report from the
wrong host, a task overtaken by a delete) is refused and logged, so state never moves
backwards and a compromised host can only speak for its own servers.
"""

from __future__ import annotations

import logging

import asyncpg

from shared.db import actions, hosts, servers
from shared.db.hosts import Resources
from shared.db.pool import Conn
from shared.messages import Fault, TaskReport
from shared.states import COMPLETIONS, TaskState

log = logging.getLogger(__name__)


async def apply_task_report(pool: asyncpg.Pool, report: TaskReport) -> bool:
    """Apply ``report``; False when it was refused as illegal or stale."""
    assert report.server_id is not None
    try:
        task = TaskState(report.task_state)
    except ValueError:
        log.warning("refusing report of unknown task %r from %s", report.task_state, report.host)
        return False
    async with pool.acquire() as conn, conn.transaction():
        row = await servers.lock(conn, report.server_id, None)
        if row is None or row["host"] != report.host or row["task_state"] != task.value:
            log.warning(
                "refusing %s report for server %s from %s: server is %s",
                task.value,
                report.server_id,
                report.host,
                "gone" if row is None else f"on {row['host']} doing {row['task_state']}",
            )
            return False
        held = Resources(row["vcpus"], row["ram_mb"], row["disk_gb"])
        if report.success:
            await _complete(conn, report, task, held)
        else:
            await _fail(conn, report, task, held)
        await actions.finish(
            conn,
            report.action_id,
            success=report.success,
            message=report.fault.message if report.fault else None,
        )
    return True


async def _complete(conn: Conn, report: TaskReport, task: TaskState, held: Resources) -> None:
    done = COMPLETIONS[task]
    if task is TaskState.DELETING:
        await servers.mark_deleted(conn, report.server_id)  # type: ignore[arg-type]
        await hosts.release(conn, report.host, held)
        return
    await conn.execute(
        """UPDATE servers SET vm_state = $2, task_state = NULL, power_state = $3, progress = 100,
                              launched_at = COALESCE(launched_at, now())
            WHERE id = $1""",
        report.server_id,
        done.vm_state.value,
        report.power_state,
    )


async def _fail(conn: Conn, report: TaskReport, task: TaskState, held: Resources) -> None:
    fault = report.fault or Fault(message=f"{task.value} failed on {report.host}")
    await servers.set_error(conn, report.server_id, fault, expected_task=task.value)  # type: ignore[arg-type]
    if task is TaskState.SPAWNING:
        # the agent cleaned up what it had built: the host no longer holds the server
        await hosts.release(conn, report.host, held)
        await conn.execute("UPDATE servers SET host = NULL WHERE id = $1", report.server_id)
