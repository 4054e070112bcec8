"""Apply what agents report to PostgreSQL: the only way a server's state follows its host.

A report is applied only if it is legal now: the server is on the reporting host and is still
running the task the report finishes, for the action the report serves. Anything else (a
redelivered report, a report from the wrong host, a task overtaken by a delete or by a later
action of the same kind) is refused and logged, so state never moves backwards and a
compromised host can only speak for its own servers.

Tasks of one step are finished here (COMPLETIONS); a resize's steps (conductor/resize.py) may
lead to the next command, published before the transaction commits, and a snapshot's report
finishes its image too (conductor/snapshots.py; a backup's also rotates the server's backups,
conductor/backups.py). The user's action is closed with the report that ends it.

Actions that set no task (resetNetwork, injectNetworkInfo) end with an ActionReport instead:
legal when the server is on the reporting host and the action is still pending; it closes the
action, and a failure is recorded as a fault of the server, whose state does not change.

Power states a hypervisor reports on its own (PowerStateReport: a guest that shut itself
down, crashed or was paused) follow the same rule, strictly: a server's power and vm_state
(``vm_state_for_power``) change only if it is on the reporting host, runs no task, and has
not changed since the host observed it, so such a report never overtakes an action, nor an
earlier observation a later one.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

import asyncpg

from conductor import backups, live_migration, resize, snapshots
from conductor.outcome import Outcome
from shared.bus import Bus
from shared.db import actions, hosts, ipam, servers
from shared.db.hosts import Resources
from shared.db.pool import Conn
from shared.messages import ActionReport, Fault, PowerStateReport, ServerPower, TaskReport
from shared.states import COMPLETIONS, PowerState, TaskState, VmState, vm_state_for_power

log = logging.getLogger(__name__)


async def apply_task_report(pool: asyncpg.Pool, report: TaskReport, bus: Bus) -> bool:
    """Apply ``report``; False when it was refused as illegal or stale. ``bus`` carries the
    command of a task's next step, if any."""
    assert report.server_id is not None
    try:
        task = TaskState(report.task_state)
    except ValueError:
        log.warning("refusing report of unknown task %r from %s", report.task_state, report.host)
        return False
    async with pool.acquire() as conn, conn.transaction():
        row = await servers.lock(conn, report.server_id, None)
        refusal = await _refusal(conn, row, report, task)
        if row is None or refusal is not None:
            log.warning(
                "refusing %s report for server %s from %s: %s",
                task.value,
                report.server_id,
                report.host,
                refusal,
            )
            return False
        outcome = await _apply(conn, bus, row, report, task)
        if outcome is not None:
            await actions.finish(
                conn, report.action_id, success=outcome.success, message=outcome.message
            )
    return True


async def _refusal(
    conn: Conn, row: asyncpg.Record | None, report: TaskReport, task: TaskState
) -> str | None:
    """Why the report is not legal now; None when it is."""
    if row is None:
        return "server is gone"
    if task in live_migration.TASKS:
        return "a live migration's steps have reports of their own"
    if row["task_state"] != task.value or report.host != await _reporting_host(conn, row, task):
        return f"server is on {row['host']} doing {row['task_state']}"
    if not await actions.is_pending(conn, report.action_id):
        return f"its action {report.action_id} is over"
    return None


async def _reporting_host(conn: Conn, row: asyncpg.Record, task: TaskState) -> str | None:
    if task in resize.TASKS:
        return await resize.reporting_host(conn, row, task)
    host: str | None = row["host"]
    return host


async def _apply(
    conn: Conn, bus: Bus, row: asyncpg.Record, report: TaskReport, task: TaskState
) -> Outcome | None:
    """Apply a legal report; the outcome of the user's action when the report ends it."""
    if task in resize.TASKS:
        return await resize.apply_report(conn, bus, row, report, task)
    if task is TaskState.IMAGE_SNAPSHOT:
        await snapshots.apply_report(conn, row, report)
        return Outcome.of(report)
    if task is TaskState.IMAGE_BACKUP:
        await backups.apply_report(conn, row, report)
        return Outcome.of(report)
    held = Resources(row["vcpus"], row["ram_mb"], row["disk_gb"])
    if not report.success:
        await _fail(conn, report, task, held)
        return Outcome.of(report)
    leftovers = await resize.leftover_originals(conn, row) if task is TaskState.DELETING else []
    await _complete(conn, report, task, held)
    await resize.destroy_leftovers(bus, report, leftovers)
    return Outcome.of(report)


async def _complete(conn: Conn, report: TaskReport, task: TaskState, held: Resources) -> None:
    done = COMPLETIONS[task]
    if task is TaskState.DELETING:
        await servers.mark_deleted(conn, report.server_id)  # type: ignore[arg-type]
        await hosts.release(conn, report.host, held)
        await ipam.release(conn, report.server_id)  # type: ignore[arg-type]
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
    done = COMPLETIONS.get(task)
    if done is not None and done.failure_keeps_state:
        # the guest is as it was (a pause, suspend... that did not happen): the task ends
        assert report.server_id is not None
        await servers.advance(conn, report.server_id, task=None, power_state=report.power_state)
        await servers.add_fault(conn, report.server_id, fault)
        return
    await servers.set_error(conn, report.server_id, fault, expected_task=task.value)  # type: ignore[arg-type]
    if task is TaskState.SPAWNING:
        # the agent cleaned up what it had built: the host no longer holds the server
        await hosts.release(conn, report.host, held)
        await conn.execute("UPDATE servers SET host = NULL WHERE id = $1", report.server_id)


async def apply_action_report(pool: asyncpg.Pool, report: ActionReport) -> bool:
    """Close the action an ActionReport ends; False when the report was refused (the server
    is gone or on another host, or the action is already over)."""
    assert report.server_id is not None
    async with pool.acquire() as conn, conn.transaction():
        row = await servers.lock(conn, report.server_id, None)
        if row is None or row["host"] != report.host:
            refusal = "server is gone" if row is None else f"server is on {row['host']}"
        elif not await actions.is_pending(conn, report.action_id):
            refusal = f"its action {report.action_id} is over"
        else:
            refusal = None
        if refusal is not None:
            log.warning(
                "refusing %s report for server %s from %s: %s",
                report.action,
                report.server_id,
                report.host,
                refusal,
            )
            return False
        message = report.fault.message if report.fault is not None else None
        if report.fault is not None:
            await servers.add_fault(conn, report.server_id, report.fault)
        await actions.finish(conn, report.action_id, success=report.success, message=message)
    return True


# --- power states reported by the hypervisor ---------------------------------------------------


async def apply_power_report(pool: asyncpg.Pool, report: PowerStateReport) -> int:
    """Apply each server's power state of ``report`` where it is legal; returns how many
    servers changed. Each server is decided alone, in a transaction of its own."""
    changed = 0
    for observed in report.servers:
        async with pool.acquire() as conn, conn.transaction():
            if await _apply_power(conn, report.host, report.observed_at, observed):
                changed += 1
    return changed


async def _apply_power(conn: Conn, host: str, observed_at: datetime, observed: ServerPower) -> bool:
    row = await conn.fetchrow(
        """SELECT host, vm_state, task_state, power_state, updated_at FROM servers
            WHERE id = $1 AND deleted_at IS NULL
              FOR UPDATE""",
        observed.server_id,
    )
    refusal = _power_refusal(row, host, observed_at)
    if refusal is not None:
        # routine: the agent reports what it sees whatever the server is doing
        log.debug("ignoring power state of %s from %s: %s", observed.server_id, host, refusal)
        return False
    assert row is not None
    try:
        power = PowerState(observed.power_state)
        vm_state = vm_state_for_power(VmState(row["vm_state"]), power)
    except ValueError:
        log.warning("ignoring power state %r of %s", observed.power_state, observed.server_id)
        return False
    if (power, vm_state) == (row["power_state"], row["vm_state"]):
        return False  # nothing new: the row (and its updated_at) stays as it is
    await _record_power(conn, observed.server_id, power, vm_state, row)
    return True


def _power_refusal(row: asyncpg.Record | None, host: str, observed_at: datetime) -> str | None:
    """Why a hypervisor's observation may not change the server now; None when it may."""
    if row is None:
        return "server is gone"
    if row["host"] != host:
        return f"server is on {row['host']}"
    if row["task_state"] is not None:
        return f"server is doing {row['task_state']}"
    if observed_at < row["updated_at"]:
        return "server changed after the observation"
    return None


async def _record_power(
    conn: Conn, server_id: uuid.UUID, power: PowerState, vm_state: VmState, row: asyncpg.Record
) -> None:
    await conn.execute(
        "UPDATE servers SET power_state = $2, vm_state = $3 WHERE id = $1",
        server_id,
        int(power),
        vm_state.value,
    )
    if vm_state != row["vm_state"]:
        log.info(
            "server %s is %s on %s (its hypervisor says %s)",
            server_id,
            vm_state.value,
            row["host"],
            power.name.lower(),
        )
