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

Power states a hypervisor reports on its own (a guest that shut itself down, crashed or was
paused) follow the same rule, strictly: a server's power and vm_state (``vm_state_for_power``)
change only if it is on the reporting host, runs no task, and has not changed since the host
looked, so such an observation never overtakes an action, nor an earlier one a later one.
Whether the host looked after the last change is never read from the host's clock, which
may be minutes off PostgreSQL's: an agent's PowerStateReport is a hint, whose servers the
conductor probes where it disagrees with the database (conductor/reconcile.py), and the
probe's answer (ProbeReport) is applied, the host having looked after the probe's
``probe_at``, a time of PostgreSQL's.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from conductor import backups, live_migration, resize, snapshots
from conductor.outcome import Outcome
from shared.bus import Bus
from shared.db import actions, hosts, ipam, servers
from shared.db.hosts import Resources
from shared.db.pool import Conn
from shared.messages import (
    ActionReport,
    Fault,
    ProbeReport,
    ServerPower,
    TaskReport,
)
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


async def apply_probed_power(pool: asyncpg.Pool, report: ProbeReport) -> int:
    """Apply the power of each probed server as the host saw it, after ``probe_at``
    (NOSTATE for one it has no domain for), where it is legal and the server unchanged since
    before ``probe_at``: then the look is newer than the server's last change, whatever the
    host's clock says. A duplicate answer finds nothing new. How many servers changed."""
    powers = {observed.server_id: observed.power_state for observed in report.found}
    changed = 0
    for server_id in report.servers:
        observed = ServerPower(
            server_id=server_id, power_state=powers.get(server_id, int(PowerState.NOSTATE))
        )
        async with pool.acquire() as conn, conn.transaction():
            if await _apply_power(conn, report.host, observed, looked_after=report.probe_at):
                changed += 1
    return changed


async def disagreements(
    pool: asyncpg.Pool, host: str, observed: Sequence[ServerPower]
) -> list[uuid.UUID]:
    """The servers a hint's power would change if the host had looked after their last
    change (on ``host``, running no task, in another power or vm_state): the ones worth a
    probe. When it agrees with the database, nothing is to be learned by asking."""
    rows = await pool.fetch(
        """SELECT id, host, vm_state, task_state, power_state FROM servers
            WHERE id = ANY($1::uuid[]) AND deleted_at IS NULL""",
        [o.server_id for o in observed],
    )
    by_id = {row["id"]: row for row in rows}
    return [
        o.server_id
        for o in observed
        if (row := by_id.get(o.server_id)) is not None
        and _power_refusal(row, host, None) is None
        and _power_change(row, o) is not None
    ]


async def _apply_power(
    conn: Conn, host: str, observed: ServerPower, *, looked_after: datetime
) -> bool:
    """``looked_after``: a time, on PostgreSQL's clock, the host's look is known to follow."""
    row = await conn.fetchrow(
        """SELECT host, vm_state, task_state, power_state, updated_at FROM servers
            WHERE id = $1 AND deleted_at IS NULL
              FOR UPDATE""",
        observed.server_id,
    )
    refusal = _power_refusal(row, host, looked_after)
    if refusal is not None:
        # routine: the agent reports what it sees whatever the server is doing
        log.debug("ignoring power state of %s from %s: %s", observed.server_id, host, refusal)
        return False
    assert row is not None
    change = _power_change(row, observed)
    if change is None:
        return False  # nothing new: the row (and its updated_at) stays as it is
    await _record_power(conn, observed.server_id, *change, row)
    return True


def _power_refusal(
    row: asyncpg.Record | None, host: str, looked_after: datetime | None
) -> str | None:
    """Why a hypervisor's observation may not change the server now; None when it may.
    ``looked_after`` None: the moment of the look is unknown (a hint), so not judged."""
    if row is None:
        return "server is gone"
    if row["host"] != host:
        return f"server is on {row['host']}"
    if row["task_state"] is not None:
        return f"server is doing {row['task_state']}"
    if looked_after is not None and row["updated_at"] >= looked_after:
        return "server changed after the host looked"
    return None


def _power_change(row: asyncpg.Record, observed: ServerPower) -> tuple[PowerState, VmState] | None:
    """The power and vm_state ``observed`` gives the server; None when that is nothing new
    (or the power is not one we know)."""
    try:
        power = PowerState(observed.power_state)
        vm_state = vm_state_for_power(VmState(row["vm_state"]), power)
    except ValueError:
        log.warning("ignoring power state %r of %s", observed.power_state, observed.server_id)
        return None
    if (power, vm_state) == (row["power_state"], row["vm_state"]):
        return None
    return power, vm_state


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
