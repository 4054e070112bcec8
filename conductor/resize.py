"""Resizes, driven by the conductor one step at a time (guide 2.3.4–2.3.6;
docs/architecture.md, *State*): the step machine ``RESIZE`` (conductor/steps.py).

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

A resize is never abandoned by a report: a delete ends its record in the delete's own
transaction (the migrations table's trigger gives its claim back, and the delete destroys
the original the source may keep, ``leftover_originals``), and so does a task ended from
outside (shared/db/abandon.py); a report arriving after either finds no step awaited.
"""

from __future__ import annotations

import logging

import asyncpg

from conductor.outcome import Outcome
from conductor.scheduler.scheduler import NoValidHost, Scheduler
from conductor.steps import Abandoned, Step, StepMachine, StepReport, not_started
from shared.bus import Bus
from shared.db import hosts, servers
from shared.db import server_migrations as migrations
from shared.db.hosts import Resources
from shared.db.pool import Conn
from shared.db.records import LockedServer, Migration, MigrationRecord
from shared.db.server_migrations import Held, Status
from shared.messages import CommandReport, Fault, ResizeServer
from shared.rpcapi import ComputeClient, Envelope
from shared.states import TaskState, VmState

log = logging.getLogger(__name__)


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
                or row.task_state != TaskState.RESIZE_PREP
                or migration.status != Status.PRE_MIGRATING
            ):
                log.info("server %s no longer waits for its resize; dropping it", request.server_id)
                return
            need = migrations.resources(migrations.new_flavor(migration))
            try:
                dest = await self._claim_destination(conn, migration, need)
            except NoValidHost as exc:
                await _not_placed(conn, request, migration, str(exc))
                return
            await migrations.place(conn, migration.id, dest)
            await servers.advance(conn, request.server_id, task=TaskState.RESIZE_MIGRATING.value)
            log.info("resizing server %s from %s to %s", request.server_id, row.host, dest)
            await ComputeClient(self.bus, migration.source_host).migrate_disk(
                Envelope(request.request_id, request.server_id, request.action_id),
                migration.id,
                migrations.instance_before(migration),
                dest,
            )

    async def _claim_destination(self, conn: Conn, migration: Migration, need: Resources) -> str:
        """Another host if one has room; else the source itself, when allowed (a migration,
        which keeps the flavor, must move)."""
        source = migration.source_host
        try:
            return await self.scheduler.claim(conn, need, exclude=[source])
        except NoValidHost:
            keeps_flavor = migration.old_flavor_id == migration.new_flavor_id
            if not self.allow_same_host or keeps_flavor:
                raise
        return await self.scheduler.claim(conn, need)


async def _not_placed(conn: Conn, request: ResizeServer, migration: Migration, reason: str) -> None:
    """No host can take the new flavor: the server stays as it was, ACTIVE, with the reason
    recorded as a fault (ACTIVE -> RESIZE -> ACTIVE on failure)."""
    assert request.server_id is not None
    log.warning("cannot resize server %s: %s", request.server_id, reason)
    await not_started(conn, request, migration, Status.ERROR, Fault(code=500, message=reason))


# --- the reports of the later steps ------------------------------------------------------------


async def _to_error(step: StepReport) -> None:
    """ERROR with the report's fault; the claims stay as they are (a delete frees them)."""
    await servers.set_error(
        step.conn, step.row.id, step.fault, expected_task=step.report.task_state
    )
    await migrations.set_state(step.conn, step.record.id, Status.ERROR, _held(step.record))


async def _back_on_source(step: StepReport) -> None:
    """Give the destination's claim (the new flavor, which the server row accounts for)
    back and account the server on the source again with its old flavor."""
    dest, new = migrations.new_claim(_resize(step))
    await hosts.release(step.conn, dest, new)
    source, old = migrations.old_claim(step.record)
    await servers.move(
        step.conn, step.row.id, source, vcpus=old.vcpus, ram_mb=old.ram_mb, disk_gb=old.disk_gb
    )


async def _restart_original(step: StepReport) -> None:
    """Have the source run the original again with the old flavor."""
    await step.host(step.source).finish_revert_resize(
        step.envelope, step.record.id, migrations.instance_before(step.record)
    )


def _resize(step: StepReport) -> Migration:
    """The resize a step of the machine is on (``_record`` read it)."""
    assert isinstance(step.record, Migration), step.record
    return step.record


def _held(migration: MigrationRecord) -> Held | None:
    return Held(migration.held) if migration.held is not None else None


async def _migrated(step: StepReport) -> Outcome | None:
    """The source powered the server off and handed its disk over (step 2)."""
    conn, m, report = step.conn, _resize(step), step.report
    dest, new = migrations.new_claim(m)
    if not report.success:
        # nothing happened on the destination yet: the server stays ACTIVE on the source
        await hosts.release(conn, dest, new)
        await migrations.set_state(conn, m.id, Status.ERROR, None)
        await servers.advance(conn, step.row.id, task=None, power_state=report.power_state)
        await servers.add_fault(conn, step.row.id, step.fault)
        return Outcome.of(report)
    await servers.move(
        conn, step.row.id, dest, vcpus=new.vcpus, ram_mb=new.ram_mb, disk_gb=new.disk_gb
    )
    await migrations.set_state(conn, m.id, Status.POST_MIGRATING, Held.SOURCE)
    await servers.advance(
        conn, step.row.id, task=TaskState.RESIZE_FINISH.value, power_state=report.power_state
    )
    await step.host(dest).finish_resize(
        step.envelope, m.id, migrations.instance_after(m), source_host=step.source
    )
    return None


async def _finished(step: StepReport) -> Outcome | None:
    """The destination runs the server with the new flavor (step 3), or failed to."""
    conn, m, report = step.conn, _resize(step), step.report
    if report.success:
        await servers.advance(
            conn,
            step.row.id,
            task=None,
            vm_state=VmState.RESIZED.value,
            power_state=report.power_state,
            flavor_id=m.new_flavor_id,
        )
        await migrations.set_state(conn, m.id, Status.FINISHED, Held.SOURCE)
        return Outcome.of(report)
    # the destination removed what it built: roll back to the original on the source
    log.warning(
        "resize of %s failed on %s; restarting it on %s", step.row.id, report.host, step.source
    )
    await _back_on_source(step)
    await migrations.set_state(conn, m.id, Status.ERROR, None)
    await servers.add_fault(conn, step.row.id, step.fault)
    await servers.advance(
        conn, step.row.id, task=TaskState.RESIZE_REVERTING.value, power_state=report.power_state
    )
    await _restart_original(step)
    return None  # the resize has failed, but its action ends with the rollback


async def _rolled_back(step: StepReport) -> Outcome:
    """The source restarted the original after a failed resize: ACTIVE again (the fault
    stays recorded), or ERROR if even that failed. Either way the resize failed."""
    conn, row, report = step.conn, step.row, step.report
    if report.success:
        await servers.advance(conn, row.id, task=None, power_state=report.power_state)
        return Outcome(False, "the resize failed; the server runs again with its old flavor")
    fault = report.fault or Fault(message=f"restarting the server failed on {report.host}")
    await servers.set_error(conn, row.id, fault, expected_task=report.task_state)
    return Outcome(False, fault.message)


async def _confirmed(step: StepReport) -> Outcome:
    """The source discarded the original (step 4): its claim is free."""
    if not step.report.success:
        await _to_error(step)
        return Outcome.of(step.report)
    source, old = migrations.old_claim(step.record)
    await hosts.release(step.conn, source, old)
    await migrations.set_state(step.conn, step.record.id, Status.CONFIRMED, None)
    await servers.advance(step.conn, step.row.id, task=None, vm_state=VmState.ACTIVE.value)
    return Outcome.of(step.report)


async def _copy_removed(step: StepReport) -> Outcome | None:
    """A revert to another host (step 5): the destination removed its copy; the source
    runs the original again next."""
    if not step.report.success:
        await _to_error(step)
        return Outcome.of(step.report)
    await _back_on_source(step)
    await migrations.set_state(step.conn, step.record.id, Status.REVERTING, None)
    await _restart_original(step)
    return None


async def _original_restarted(step: StepReport) -> Outcome:
    """The end of a revert (step 5): the source runs the original with the old flavor."""
    m = _resize(step)
    if not step.report.success:
        await _to_error(step)
        return Outcome.of(step.report)
    if m.held == Held.SOURCE:  # the same host: the server still holds the new flavor
        await _back_on_source(step)
    await migrations.set_state(step.conn, m.id, Status.REVERTED, None)
    await servers.advance(
        step.conn,
        step.row.id,
        task=None,
        vm_state=VmState.ACTIVE.value,
        power_state=step.report.power_state,
        flavor_id=m.old_flavor_id,
    )
    return Outcome.of(step.report)


# --- the machine ---------------------------------------------------------------------------------

_MIGRATE_DISK = Step("migrate_disk", "source_host", _migrated)
_FINISH = Step("finish_resize", "dest_host", _finished)
_CONFIRM = Step("confirm_resize", "source_host", _confirmed)
_REMOVE_COPY = Step("revert_resize", "dest_host", _copy_removed)
_RESTART_ORIGINAL = Step("finish_revert_resize", "source_host", _original_restarted)
_ROLL_BACK = Step("finish_revert_resize", "source_host", _rolled_back)

#: The step a resize awaits, by the server's task and the record's status.
_STEPS: dict[tuple[str | None, str], Step] = {
    (TaskState.RESIZE_MIGRATING, Status.MIGRATING): _MIGRATE_DISK,
    (TaskState.RESIZE_FINISH, Status.POST_MIGRATING): _FINISH,
    (TaskState.RESIZE_CONFIRMING, Status.FINISHED): _CONFIRM,
    (TaskState.RESIZE_REVERTING, Status.REVERTING): _RESTART_ORIGINAL,
    # a resize that failed on its destination, rolled back: the record ended in error
    (TaskState.RESIZE_REVERTING, Status.ERROR): _ROLL_BACK,
}


def _awaited(row: LockedServer, record: MigrationRecord) -> Step | str:
    task, status = row.task_state, record.status
    if (task, status) == (TaskState.RESIZE_REVERTING, Status.FINISHED):
        # a revert: on the same host only the original is restarted
        return _RESTART_ORIGINAL if migrations.same_host(record) else _REMOVE_COPY
    step = _STEPS.get((task, status))
    if step is None:
        return f"the resize is {status}, awaiting no step while the server is doing {task}"
    return step


async def _record(conn: Conn, report: CommandReport) -> Migration | None:
    if report.migration_id is None:
        return None
    record = await migrations.get(conn, report.migration_id)
    if record is None or record.server_id != report.server_id:
        return None
    return record


async def _never_abandoned(report: Abandoned) -> bool:
    """A resize ends with the delete, or the task, that ends it (the module's docstring)."""
    return False


RESIZE = StepMachine(
    name="resize",
    tasks=frozenset(
        {
            TaskState.RESIZE_MIGRATING,
            TaskState.RESIZE_FINISH,
            TaskState.RESIZE_CONFIRMING,
            TaskState.RESIZE_REVERTING,
        }
    ),
    record=_record,
    awaited=_awaited,
    abandon=_never_abandoned,
)


# --- a deleted server's original on another host -----------------------------------------------


async def leftover_originals(conn: Conn, row: LockedServer) -> list[str]:
    """Hosts still keeping the original of a server that a resize moved away: a delete
    destroys the server on its current host only, and must clean those up too. Ask before
    the server is marked deleted (which gives the claims back)."""
    return await migrations.originals_elsewhere(conn, row.id, row.host)


async def destroy_leftovers(bus: Bus, report: CommandReport, leftovers: list[str]) -> None:
    """Send the destroys (their reports will find the server gone, and change nothing)."""
    assert report.server_id is not None
    for host in leftovers:
        log.info("destroying the original of deleted server %s on %s", report.server_id, host)
        await ComputeClient(bus, host).destroy_server(
            Envelope(report.request_id, report.server_id, report.action_id)
        )
