"""Live migrations (os-migrateLive, guide 3.1 `os-migrateLive`), driven by the conductor one
step at a time: the step machine ``LIVE_MIGRATION`` (conductor/steps.py).

The gateway accepts a live migration (task ``migrating``, status MIGRATING; the server stays
ACTIVE and keeps running) and records it (``accepted``, with the destination the request
names, or none: ``start`` then picks the usable host with the most free RAM that has room, as
the scheduler weighs, or ends the action with nova's NoValidHost). From there each step
starts when the previous one is reported (the step the record awaits, from the host whose
step it is):

1. ``start``: the destination exists, is enabled and alive, is not the source, runs the same
   hypervisor and has room; the room is claimed there (held by the migration); the
   destination prepares (``PrepareLiveMigration``).
2. prepared: the source migrates the running server (``LiveMigrate``, to the destination's
   hypervisor URI as its heartbeats report it).
3. migrated: the destination confirms the server runs there (``FinishLiveMigration``; with
   the handover the source gives when its hypervisor cannot migrate).
4. arrived: the server is accounted on the destination (its host, its claim); the
   migration holds the source's claim while the source removes what is left of the server
   (``CleanUpLiveMigration``).
5. cleaned up: the source's claim is given back; ACTIVE on the destination.

Failures: when the destination cannot be used (step 1) or cannot prepare, nothing moved: the
claim (if made) is given back and the server stays ACTIVE on the source with a fault. When
the migration or the confirmation fails, the source first makes sure the server runs there
(``RecoverLiveMigration``), then the destination removes what it prepared or received
(``RollBackLiveMigration``) and its claim is given back: ACTIVE on the source, with a fault.
If the source does not have the server any more, the hypervisor did move it: it is
accounted on the destination, in ERROR, and nothing is removed anywhere. No step ever
destroys what may be the only copy of a running server.

Abandoned: if the server was deleted, or its task ended, while the migration ran, the
migration ends when its next report comes (its claim given back), and a deleted server's
destination is told to destroy what it may hold.
"""

from __future__ import annotations

import dataclasses
import logging

import asyncpg

from conductor.outcome import Outcome
from conductor.steps import Abandoned, Step, StepMachine, StepReport, not_started
from shared.bus import Bus
from shared.db import hosts, servers
from shared.db import live_migrations as live_db
from shared.db import server_migrations as migrations
from shared.db.hosts import Ratios
from shared.db.live_migrations import Status
from shared.db.pool import Conn
from shared.db.records import LiveMigration, LockedServer, MigrationRecord
from shared.db.server_migrations import Held
from shared.messages import CommandReport, Fault, InstanceSpec, LiveMigrateServer
from shared.rpcapi import ComputeClient, Envelope
from shared.states import TaskState

log = logging.getLogger(__name__)


class LiveMigrationConductor:
    """Step 1: check the destination and claim room there."""

    def __init__(
        self, pool: asyncpg.Pool, bus: Bus, *, ratios: Ratios, down_after_s: float
    ) -> None:
        self.pool = pool
        self.bus = bus
        self.ratios = ratios
        self.down_after_s = down_after_s

    async def start(self, request: LiveMigrateServer) -> None:
        """Check the destination and claim the server's room there, then have it prepare;
        or end the action as failed, the server still ACTIVE on the source."""
        assert request.server_id is not None
        async with self.pool.acquire() as conn, conn.transaction():
            row = await servers.lock(conn, request.server_id, None)
            migration = await live_db.get(conn, request.migration_id)
            if not _waiting_to_start(row, migration, request):
                log.info("server %s no longer waits for its live migration", request.server_id)
                return
            assert row is not None and migration is not None
            migration, refusal = await self._check_and_claim(conn, row, migration)
            if refusal is not None:
                await _not_started(conn, request, migration, refusal)
                return
            await migrations.set_state(conn, migration.id, Status.PREPARING, Held.DEST)
            log.info(
                "live-migrating server %s from %s to %s",
                row.id,
                migration.source_host,
                migration.dest_host,
            )
            await ComputeClient(self.bus, migration.placed_dest).prepare_live_migration(
                Envelope(request.request_id, row.id, request.action_id),
                migration.id,
                live_db.instance(migration),
                block_migration=migration.block_migration,
            )

    async def _check_and_claim(
        self, conn: Conn, row: LockedServer, migration: LiveMigration
    ) -> tuple[LiveMigration, str | None]:
        """The migration with its destination (the one the request named, or the one picked
        here), and why the destination cannot take the server now (None once its room is
        claimed)."""
        if migration.dest_host is None:
            return await self._pick_and_claim(conn, migration)
        return migration, await self._check_and_claim_named(conn, row, migration)

    async def _pick_and_claim(
        self, conn: Conn, migration: LiveMigration
    ) -> tuple[LiveMigration, str | None]:
        """Schedule a live migration the request named no destination for (nova 2013.2):
        claim room on the best usable host but the source (the scheduler's weighing: the
        most free RAM), or nova's NoValidHost when none has room now."""
        for host in await live_db.candidates(
            conn,
            source=migration.source_host,
            need=live_db.resources(migration),
            ratios=self.ratios,
            check_disk=not migration.disk_over_commit,
        ):
            refusal = await live_db.claim(
                conn,
                host,
                live_db.resources(migration),
                self.ratios,
                check_disk=not migration.disk_over_commit,
            )
            # a refusal: another conductor filled it since the look; try the next one
            if refusal is None:
                await live_db.set_dest(conn, migration.id, host)
                return dataclasses.replace(migration, dest_host=host), None
        return migration, live_db.NO_VALID_HOST

    async def _check_and_claim_named(
        self, conn: Conn, row: LockedServer, migration: LiveMigration
    ) -> str | None:
        """Why the named destination cannot take the server now; None once its room is
        claimed."""
        refusal = await live_db.target_refusal(
            conn,
            server_id=row.id,
            source=migration.source_host,
            dest=migration.placed_dest,
            down_after_s=self.down_after_s,
        )
        if refusal is not None:
            return refusal
        return await live_db.claim(
            conn,
            migration.placed_dest,
            live_db.resources(migration),
            self.ratios,
            check_disk=not migration.disk_over_commit,
        )


def _waiting_to_start(
    row: LockedServer | None, migration: LiveMigration | None, request: LiveMigrateServer
) -> bool:
    return (
        row is not None
        and migration is not None
        and row.task_state == TaskState.MIGRATING
        and row.host == migration.source_host
        and migration.action_id == request.action_id
        and migration.status == Status.ACCEPTED
    )


async def _not_started(
    conn: Conn, request: LiveMigrateServer, migration: LiveMigration, reason: str
) -> None:
    """The destination cannot take the server: it stays as it was, ACTIVE on the source,
    with the reason recorded as a fault (400: the request named an unusable host)."""
    assert request.server_id is not None
    log.warning("cannot live-migrate server %s: %s", request.server_id, reason)
    await not_started(conn, request, migration, Status.ERROR, Fault(code=400, message=reason))


# --- the reports of the steps ------------------------------------------------------------------


def _instance(step: StepReport) -> InstanceSpec:
    return live_db.instance(step.record)


def _block_migration(step: StepReport) -> bool:
    assert isinstance(step.record, LiveMigration), step.record  # read by ``_record``
    return step.record.block_migration


async def _set_status(step: StepReport, status: Status, held: Held | None) -> None:
    await migrations.set_state(step.conn, step.record.id, status, held)


async def _still_migrating(step: StepReport, status: Status, held: Held) -> None:
    """The migration goes on to ``status``, holding ``held``; the server's task stays
    MIGRATING, with the power state its host reports."""
    await servers.advance(
        step.conn, step.row.id, task=TaskState.MIGRATING.value, power_state=step.report.power_state
    )
    await _set_status(step, status, held)


async def _idle(step: StepReport, *, power_state: int | None = None) -> None:
    """The server's task is over (it is ACTIVE, on whichever host it is accounted)."""
    await servers.advance(step.conn, step.row.id, task=None, power_state=power_state)


async def _prepared(step: StepReport) -> Outcome | None:
    """Step 2: the destination is ready, the source migrates. A destination that could not
    prepare left nothing behind: its claim goes back, and the server never moved."""
    if not step.report.success:
        await live_db.release_held(step.conn, step.record)
        await _set_status(step, Status.ERROR, None)
        await _idle(step)
        await servers.add_fault(step.conn, step.row.id, step.fault)
        return Outcome(False, step.fault.message)
    dest_uri = await live_db.hypervisor_uri(step.conn, step.dest)
    assert dest_uri is not None, "the claim was made on this host"
    await _set_status(step, Status.RUNNING, Held.DEST)
    await step.host(step.source).live_migrate(
        step.envelope,
        step.record.id,
        _instance(step),
        dest_host=step.dest,
        dest_uri=dest_uri,
        block_migration=_block_migration(step),
    )
    return None


async def _migrated(step: StepReport) -> Outcome | None:
    """Step 3: the server has moved (or been handed over); the destination confirms it."""
    if not step.report.success:
        await _recover(step)
        return None
    await _set_status(step, Status.ARRIVING, Held.DEST)
    await step.host(step.dest).finish_live_migration(
        step.envelope, step.record.id, _instance(step), handover=step.report.handover
    )
    return None


async def _arrived(step: StepReport) -> Outcome | None:
    """Step 4: the server runs on the destination: it is accounted there (the claim the
    migration held becomes the server's, the server's on the source the migration's) while
    the source removes what is left of it."""
    if not step.report.success:
        await _recover(step)
        return None
    await _move_to_dest(step)
    await _still_migrating(step, Status.CLEANING, Held.SOURCE)
    await step.host(step.source).clean_up_live_migration(
        step.envelope, step.record.id, _instance(step), block_migration=_block_migration(step)
    )
    return None


async def _move_to_dest(step: StepReport) -> None:
    """Account the server on the destination, on the claim the migration held there (the
    server's claim on the source is the caller's to give back, or to hand the migration)."""
    need = live_db.resources(step.record)
    await servers.move(
        step.conn,
        step.row.id,
        step.dest,
        vcpus=need.vcpus,
        ram_mb=need.ram_mb,
        disk_gb=need.disk_gb,
    )


async def _cleaned_up(step: StepReport) -> Outcome:
    """Step 5: done; the source's claim goes back. A source that could not remove what was
    left of the server does not undo the migration: the failure is recorded as a fault."""
    await live_db.release_held(step.conn, step.record)
    await _set_status(step, Status.CONFIRMED, None)
    await _idle(step)
    log.info("server %s live-migrated from %s to %s", step.row.id, step.source, step.dest)
    if step.report.success:
        return Outcome(True)
    await servers.add_fault(step.conn, step.row.id, step.fault)
    return Outcome(
        True,
        f"migrated to {step.dest}; {step.source} could not clean up: {step.fault.message}",
    )


async def _recover(step: StepReport) -> None:
    """The migration or its confirmation failed: first the source makes sure the server
    runs there (the destination's copy, if any, stays until then)."""
    log.warning(
        "live migration of %s to %s failed at %s; recovering it on %s",
        step.row.id,
        step.dest,
        step.report.command,
        step.source,
    )
    await servers.add_fault(step.conn, step.row.id, step.fault)
    await _set_status(step, Status.RECOVERING, Held.DEST)
    await step.host(step.source).recover_live_migration(
        step.envelope, step.record.id, _instance(step)
    )


async def _recovered(step: StepReport) -> Outcome | None:
    """The server runs on the source again: the destination removes what it holds.

    If the source does not have it any more, the hypervisor did move it, and the destination
    is the only place it can be, though it could not confirm it runs: the server is accounted
    there, in ERROR, and nothing is removed anywhere (a delete, or a hard reboot, then acts
    on the destination)."""
    if not step.report.success:
        await _move_to_dest(step)
        await hosts.release(step.conn, step.source, live_db.resources(step.record))
        await servers.set_error(
            step.conn, step.row.id, step.fault, expected_task=TaskState.MIGRATING.value
        )
        await _set_status(step, Status.ERROR, None)
        return Outcome(False, step.fault.message)
    await _still_migrating(step, Status.ROLLING_BACK, Held.DEST)
    await step.host(step.dest).roll_back_live_migration(
        step.envelope, step.record.id, _instance(step), block_migration=_block_migration(step)
    )
    return None


async def _rolled_back(step: StepReport) -> Outcome:
    """The destination removed what it held (or failed to, recorded as a fault): its claim
    goes back, and the server is ACTIVE on the source again. The migration failed."""
    await live_db.release_held(step.conn, step.record)
    await _set_status(step, Status.ERROR, None)
    await _idle(step)
    if not step.report.success:
        await servers.add_fault(step.conn, step.row.id, step.fault)
    return Outcome(
        False, f"the live migration to {step.dest} failed; the server runs on {step.source}"
    )


# --- the machine ---------------------------------------------------------------------------------

#: The step a live migration awaits, by its record's status.
_STEPS: dict[str, Step] = {
    Status.PREPARING: Step("prepare_live_migration", "dest_host", _prepared),
    Status.RUNNING: Step("live_migrate", "source_host", _migrated),
    Status.ARRIVING: Step("finish_live_migration", "dest_host", _arrived),
    Status.CLEANING: Step("clean_up_live_migration", "source_host", _cleaned_up),
    Status.RECOVERING: Step("recover_live_migration", "source_host", _recovered),
    Status.ROLLING_BACK: Step("roll_back_live_migration", "dest_host", _rolled_back),
}

#: Steps after which the destination may still hold something of the server (until its
#: roll-back, or until the server is accounted there)
_DEST_MAY_HOLD = frozenset(
    {"prepare_live_migration", "live_migrate", "finish_live_migration", "recover_live_migration"}
)


def _awaited(row: LockedServer, record: MigrationRecord) -> Step | str:
    status = record.status
    if status not in live_db.UNDER_WAY:
        return f"the live migration is over ({status})"
    return _STEPS.get(status) or f"the live migration is {status}, awaiting no host"


async def _record(conn: Conn, report: CommandReport) -> LiveMigration | None:
    if report.migration_id is None:
        return None
    record = await live_db.get(conn, report.migration_id)
    if (
        record is None
        or record.server_id != report.server_id
        or record.action_id != report.action_id
    ):
        return None
    return record


def _was_abandoned(row: LockedServer | None, record: MigrationRecord) -> bool:
    """Was the server deleted, or did its task end, while the migration was under way?"""
    if row is None:
        return True
    return row.task_state != TaskState.MIGRATING and record.status in live_db.UNDER_WAY


async def _abandon(late: Abandoned) -> bool:
    """The server was deleted (or is being deleted), or its task ended (os-resetState),
    while its live migration ran: the migration ends, its claim given back (a deletion did
    that already). A deleted server is destroyed on the host it is accounted on; if that is
    still the source, the destination may hold it too, and is told to destroy it."""
    row, record, report = late.row, late.record, late.report
    if not _was_abandoned(row, record):
        return False
    log.warning(
        "live migration %s of server %s was abandoned (%s); ignoring its %s report",
        record.id,
        report.server_id,
        "server deleted" if row is None else f"task {row.task_state}",
        report.command,
    )
    if record.status in live_db.UNDER_WAY:
        await live_db.abandon(late.conn, record)
    going = row is None or row.task_state == TaskState.DELETING
    if going and report.command in _DEST_MAY_HOLD:
        await ComputeClient(late.bus, record.placed_dest).destroy_server(
            Envelope(report.request_id, record.server_id, report.action_id)
        )
    return True


LIVE_MIGRATION = StepMachine(
    name="live migration",
    tasks=frozenset({TaskState.MIGRATING}),
    record=_record,
    awaited=_awaited,
    abandon=_abandon,
)
