"""Resizes, driven by the conductor one step at a time (guide 2.3.4–2.3.6; docs/architecture.md, *State*).

The gateway accepts a resize (task ``resize_prep``) and records it (migration
``pre-migrating``, holding the server's spec and both flavors). From there each step starts
when the previous one is reported:

1. ``schedule``: claim the new flavor on a destination host (another one if there is room,
   else the same one when ``allow_resize_to_same_host``); task ``resize_migrating``; the
   source powers the server off and hands its disk over (``MigrateDisk``).
2. source reports: the server is accounted on the destination with the new flavor, the
   migration keeps the old claim on the source; task ``resize_finish``; the destination runs
   the server with the new flavor (``FinishResize``).
3. destination reports: VERIFY_RESIZE (vm_state ``resized``), new flavor shown.
4. confirmResize (the gateway sends ``ConfirmResize`` to the source): the source discards
   the original; the old claim is released; ACTIVE.
5. revertResize: after a resize to another host, the destination removes its copy
   (``RevertResize``), its claim is released and the server is accounted on the source
   again, which then restarts the original with the old flavor (``FinishRevertResize``); on
   the same host that last command is the only one. ACTIVE with the old flavor.

Failures: before the destination runs the server, back to ACTIVE on the source with a fault
recorded; when the destination fails, it cleans up, its claim is released and the source
restarts the original (REVERT_RESIZE, then ACTIVE); a failed confirm or revert is ERROR.
At every moment what the hosts hold is the server row's claim plus the migration's ``held``
one, so usage stays exact on every path, deletes included (see the migrations table).

The flavor change is optional: a migration (same flavor, another host) is the same steps
with ``new_flavor`` equal to the old one and the source excluded from scheduling.

A step's command is published before its transaction commits: if publishing fails nothing
is committed and the message that started the step comes again; if the commit fails after
publishing, the host does the step twice, which its driver makes harmless.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg

from conductor.outcome import Outcome
from conductor.scheduler.scheduler import NoValidHost, Scheduler
from shared import bus as bus_mod
from shared.bus import Bus
from shared.db import actions, hosts, servers
from shared.db import server_migrations as migrations
from shared.db.hosts import Resources
from shared.db.pool import Conn
from shared.db.server_migrations import Held, Status
from shared.messages import (
    DestroyServer,
    Fault,
    FinishResize,
    FinishRevertResize,
    MigrateDisk,
    ResizeServer,
    TaskReport,
)
from shared.states import TaskState, VmState

log = logging.getLogger(__name__)

#: The tasks whose reports this module applies.
TASKS = frozenset(
    {
        TaskState.RESIZE_MIGRATING,
        TaskState.RESIZE_FINISH,
        TaskState.RESIZE_CONFIRMING,
        TaskState.RESIZE_REVERTING,
    }
)


class ResizeScheduler:
    """Step 1: choose the destination and claim the new flavor there."""

    def __init__(
        self, pool: asyncpg.Pool, bus: Bus, scheduler: Scheduler, *, allow_same_host: bool
    ) -> None:
        self.pool = pool
        self.bus = bus
        self.scheduler = scheduler
        self.allow_same_host = allow_same_host

    async def schedule(self, request: ResizeServer) -> None:
        assert request.server_id is not None
        async with self.pool.acquire() as conn, conn.transaction():
            row = await servers.lock(conn, request.server_id, None)
            migration = await migrations.get(conn, request.migration_id)
            if (
                row is None
                or migration is None
                or row["task_state"] != TaskState.RESIZE_PREP
                or migration["status"] != Status.PRE_MIGRATING
            ):
                log.info("server %s no longer waits for its resize; dropping it", request.server_id)
                return
            need = migrations.resources(migrations.new_flavor(migration))
            try:
                dest = await self._claim_destination(conn, migration, need)
            except NoValidHost as exc:
                await _not_placed(conn, request, migration, str(exc))
                return
            await migrations.place(conn, migration["id"], dest)
            await servers.advance(conn, request.server_id, task=TaskState.RESIZE_MIGRATING.value)
            log.info("resizing server %s from %s to %s", request.server_id, row["host"], dest)
            await self.bus.publish(
                bus_mod.compute_queue(migration["source_host"]),
                MigrateDisk(
                    request_id=request.request_id,
                    server_id=request.server_id,
                    action_id=request.action_id,
                    migration_id=migration["id"],
                    instance=migrations.instance_before(migration),
                    dest_host=dest,
                ),
            )

    async def _claim_destination(
        self, conn: Conn, migration: asyncpg.Record, need: Resources
    ) -> str:
        """Another host if one has room; else the source itself, when allowed (a migration,
        which keeps the flavor, must move)."""
        source = migration["source_host"]
        try:
            return await self.scheduler.claim(conn, need, exclude=[source])
        except NoValidHost:
            keeps_flavor = migration["old_flavor_id"] == migration["new_flavor_id"]
            if not self.allow_same_host or keeps_flavor:
                raise
        return await self.scheduler.claim(conn, need)


async def _not_placed(
    conn: Conn, request: ResizeServer, migration: asyncpg.Record, reason: str
) -> None:
    """No host can take the new flavor: the server stays as it was, ACTIVE, with the reason
    recorded as a fault (ACTIVE -> RESIZE -> ACTIVE on failure)."""
    assert request.server_id is not None
    log.warning("cannot resize server %s: %s", request.server_id, reason)
    await migrations.set_state(conn, migration["id"], Status.ERROR, None)
    await servers.advance(conn, request.server_id, task=None)
    await servers.add_fault(conn, request.server_id, Fault(code=500, message=reason))
    await actions.finish(conn, request.action_id, success=False, message=reason)


# --- the reports of the later steps ------------------------------------------------------------


async def reporting_host(conn: Conn, row: asyncpg.Record, task: TaskState) -> str | None:
    """The host allowed to report ``task`` for the server: its own host, except for a
    confirm, which the source of its resize reports while the server is on the destination."""
    if task is TaskState.RESIZE_CONFIRMING:
        migration = await migrations.open_for(conn, row["id"])
        return migration["source_host"] if migration is not None else None
    host: str | None = row["host"]
    return host


@dataclass(frozen=True)
class _Step:
    """A legal report of one resize step (checked by conductor/reports.py), and where it
    applies: the server's locked row and its open migration."""

    conn: Conn
    bus: Bus
    row: asyncpg.Record
    report: TaskReport
    migration: asyncpg.Record

    @property
    def fault(self) -> Fault:
        return self.report.fault or Fault(
            message=f"{self.report.task_state} failed on {self.report.host}"
        )

    async def send(self, host: str, command: FinishResize | FinishRevertResize) -> None:
        await self.bus.publish(bus_mod.compute_queue(host), command)

    async def to_error(self) -> None:
        """ERROR with the report's fault; the claims stay as they are (a delete frees them)."""
        await servers.set_error(
            self.conn, self.row["id"], self.fault, expected_task=self.report.task_state
        )
        await migrations.set_state(
            self.conn, self.migration["id"], Status.ERROR, _held(self.migration)
        )

    async def back_on_source(self) -> None:
        """Give the destination's claim (the new flavor, which the server row accounts for)
        back and account the server on the source again with its old flavor."""
        dest, new = migrations.new_claim(self.migration)
        await hosts.release(self.conn, dest, new)
        source, old = migrations.old_claim(self.migration)
        await servers.move(
            self.conn,
            self.row["id"],
            source,
            vcpus=old.vcpus,
            ram_mb=old.ram_mb,
            disk_gb=old.disk_gb,
        )

    def restart_original(self) -> FinishRevertResize:
        return FinishRevertResize(
            request_id=self.report.request_id,
            server_id=self.row["id"],
            action_id=self.report.action_id,
            migration_id=self.migration["id"],
            instance=migrations.instance_before(self.migration),
        )


def _held(migration: asyncpg.Record) -> Held | None:
    return Held(migration["held"]) if migration["held"] is not None else None


async def apply_report(
    conn: Conn, bus: Bus, row: asyncpg.Record, report: TaskReport, task: TaskState
) -> Outcome | None:
    """Apply the report of a resize step; the outcome of the user's action when the step
    ends it, None when the action goes on."""
    if task is TaskState.RESIZE_REVERTING and row["vm_state"] == VmState.ACTIVE:
        return await _rolled_back(conn, row, report)
    migration = await migrations.open_for(conn, row["id"])
    if migration is None:
        log.error("server %s reports %s but has no resize under way", row["id"], task.value)
        fault = Fault(message=f"{task.value} has no resize record")
        await servers.set_error(conn, row["id"], fault, expected_task=task.value)
        return Outcome(False, fault.message)
    step = _Step(conn, bus, row, report, migration)
    if task is TaskState.RESIZE_MIGRATING:
        return await _migrated(step)
    if task is TaskState.RESIZE_FINISH:
        return await _finished(step)
    if task is TaskState.RESIZE_CONFIRMING:
        return await _confirmed(step)
    return await _reverted(step)


async def _migrated(step: _Step) -> Outcome | None:
    """The source powered the server off and handed its disk over (step 2)."""
    conn, m, report = step.conn, step.migration, step.report
    if not report.success:
        # nothing happened on the destination yet: the server stays ACTIVE on the source
        dest, new = migrations.new_claim(m)
        await hosts.release(conn, dest, new)
        await migrations.set_state(conn, m["id"], Status.ERROR, None)
        await servers.advance(conn, step.row["id"], task=None, power_state=report.power_state)
        await servers.add_fault(conn, step.row["id"], step.fault)
        return Outcome.of(report)
    dest, new = migrations.new_claim(m)
    await servers.move(
        conn, step.row["id"], dest, vcpus=new.vcpus, ram_mb=new.ram_mb, disk_gb=new.disk_gb
    )
    await migrations.set_state(conn, m["id"], Status.POST_MIGRATING, Held.SOURCE)
    await servers.advance(
        conn, step.row["id"], task=TaskState.RESIZE_FINISH.value, power_state=report.power_state
    )
    await step.send(
        dest,
        FinishResize(
            request_id=report.request_id,
            server_id=step.row["id"],
            action_id=report.action_id,
            migration_id=m["id"],
            instance=migrations.instance_after(m),
            source_host=m["source_host"],
        ),
    )
    return None


async def _finished(step: _Step) -> Outcome | None:
    """The destination runs the server with the new flavor (step 3), or failed to."""
    conn, m, report = step.conn, step.migration, step.report
    if report.success:
        await servers.advance(
            conn,
            step.row["id"],
            task=None,
            vm_state=VmState.RESIZED.value,
            power_state=report.power_state,
            flavor_id=m["new_flavor_id"],
        )
        await migrations.set_state(conn, m["id"], Status.FINISHED, Held.SOURCE)
        return Outcome.of(report)
    # the destination removed what it built: roll back to the original on the source
    log.warning(
        "resize of %s failed on %s; restarting it on %s",
        step.row["id"],
        report.host,
        m["source_host"],
    )
    await step.back_on_source()
    await migrations.set_state(conn, m["id"], Status.ERROR, None)
    await servers.add_fault(conn, step.row["id"], step.fault)
    await servers.advance(
        conn, step.row["id"], task=TaskState.RESIZE_REVERTING.value, power_state=report.power_state
    )
    await step.send(m["source_host"], step.restart_original())
    return None  # the resize has failed, but its action ends with the rollback


async def _rolled_back(conn: Conn, row: asyncpg.Record, report: TaskReport) -> Outcome:
    """The source restarted the original after a failed resize: ACTIVE again (the fault
    stays recorded), or ERROR if even that failed. Either way the resize failed."""
    if report.success:
        await servers.advance(conn, row["id"], task=None, power_state=report.power_state)
        return Outcome(False, "the resize failed; the server runs again with its old flavor")
    fault = report.fault or Fault(message=f"restarting the server failed on {report.host}")
    await servers.set_error(conn, row["id"], fault, expected_task=report.task_state)
    return Outcome(False, fault.message)


async def _confirmed(step: _Step) -> Outcome:
    """The source discarded the original (step 4): its claim is free."""
    if not step.report.success:
        await step.to_error()
        return Outcome.of(step.report)
    source, old = migrations.old_claim(step.migration)
    await hosts.release(step.conn, source, old)
    await migrations.set_state(step.conn, step.migration["id"], Status.CONFIRMED, None)
    await servers.advance(step.conn, step.row["id"], task=None, vm_state=VmState.ACTIVE.value)
    return Outcome.of(step.report)


async def _reverted(step: _Step) -> Outcome | None:
    """A revert step (5): the destination removed its copy, or the source runs the original
    again."""
    m = step.migration
    if not step.report.success:
        await step.to_error()
        return Outcome.of(step.report)
    if not migrations.same_host(m) and step.row["host"] == m["dest_host"]:
        await step.back_on_source()
        await migrations.set_state(step.conn, m["id"], Status.REVERTING, None)
        await step.send(m["source_host"], step.restart_original())
        return None
    if m["held"] == Held.SOURCE:  # the same host: the server still holds the new flavor
        await step.back_on_source()
    await migrations.set_state(step.conn, m["id"], Status.REVERTED, None)
    await servers.advance(
        step.conn,
        step.row["id"],
        task=None,
        vm_state=VmState.ACTIVE.value,
        power_state=step.report.power_state,
        flavor_id=m["old_flavor_id"],
    )
    return Outcome.of(step.report)


# --- a deleted server's original on another host -----------------------------------------------


async def leftover_originals(conn: Conn, row: asyncpg.Record) -> list[str]:
    """Hosts still keeping the original of a server that a resize moved away: a delete
    destroys the server on its current host only, and must clean those up too. Ask before
    the server is marked deleted (which gives the claims back)."""
    return await migrations.originals_elsewhere(conn, row["id"], row["host"])


async def destroy_leftovers(bus: Bus, report: TaskReport, leftovers: list[str]) -> None:
    """Send the destroys (their reports will find the server gone, and change nothing)."""
    for host in leftovers:
        log.info("destroying the original of deleted server %s on %s", report.server_id, host)
        await bus.publish(
            bus_mod.compute_queue(host),
            DestroyServer(
                request_id=report.request_id,
                server_id=report.server_id,
                action_id=report.action_id,
                domain_name=f"instance-{report.server_id}",
            ),
        )
