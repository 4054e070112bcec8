"""Live migrations (os-migrateLive, guide 3.1 `os-migrateLive`), driven by the conductor one step at a time.

The gateway accepts a live migration (task ``migrating``, status MIGRATING; the server stays
ACTIVE and keeps running) and records it (``accepted``, with the destination the request
names). From there each step starts when the previous one is reported
(``LiveMigrationReport``, checked: the step the migration waits for, from the host whose
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

A step's command is published before its transaction commits (as a resize's): if publishing
fails nothing is committed and the report comes again; if the commit fails after
publishing, the host does the step twice, which its driver makes harmless. A report that is
not the one awaited (a duplicate, a stale one) changes nothing. If the server was deleted,
or an os-resetState ended its task, while the migration ran, the migration ends there (its
claim given back) and a deleted server's destination is told to destroy what it holds.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from conductor.outcome import Outcome
from shared import bus as bus_mod
from shared.bus import Bus
from shared.db import actions, hosts, servers
from shared.db import live_migrations as live_db
from shared.db.hosts import Ratios
from shared.db.live_migrations import Status
from shared.db.pool import Conn
from shared.db.server_migrations import Held
from shared.messages import (
    ActionMessage,
    CleanUpLiveMigration,
    DestroyServer,
    Fault,
    FinishLiveMigration,
    InstanceSpec,
    LiveMigrate,
    LiveMigrateServer,
    LiveMigrationReport,
    LiveMigrationStep,
    PrepareLiveMigration,
    RecoverLiveMigration,
    RollBackLiveMigration,
)
from shared.states import TaskState

log = logging.getLogger(__name__)

#: The tasks whose progress this module applies (agents report them as LiveMigrationReports,
#: never as TaskReports).
TASKS = frozenset({TaskState.MIGRATING})

#: For each step, the status of a migration waiting for it, and whose step it is (the
#: column naming the host whose report is awaited).
_AWAITED: dict[LiveMigrationStep, tuple[Status, str]] = {
    "prepare": (Status.PREPARING, "dest_host"),
    "migrate": (Status.RUNNING, "source_host"),
    "finish": (Status.ARRIVING, "dest_host"),
    "clean_up": (Status.CLEANING, "source_host"),
    "recover": (Status.RECOVERING, "source_host"),
    "roll_back": (Status.ROLLING_BACK, "dest_host"),
}

#: Steps after which the destination may still hold something of the server (until its
#: roll-back, or until the server is accounted there)
_DEST_MAY_HOLD: frozenset[LiveMigrationStep] = frozenset(
    {"prepare", "migrate", "finish", "recover"}
)


class LiveMigrationConductor:
    def __init__(
        self, pool: asyncpg.Pool, bus: Bus, *, ratios: Ratios, down_after_s: float
    ) -> None:
        self.pool = pool
        self.bus = bus
        self.ratios = ratios
        self.down_after_s = down_after_s

    # --- step 1: the destination ---------------------------------------------------------

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
            refusal = await self._check_and_claim(conn, row, migration)
            if refusal is not None:
                await _not_started(conn, request, migration, refusal)
                return
            await live_db.set_status(conn, migration["id"], Status.PREPARING, Held.DEST)
            log.info(
                "live-migrating server %s from %s to %s",
                row["id"],
                migration["source_host"],
                migration["dest_host"],
            )
            step = _Step(conn, self.bus, row, migration, None)
            await step.send(
                step.dest,
                PrepareLiveMigration(
                    **step.envelope(request),
                    instance=step.instance,
                    block_migration=step.block_migration,
                ),
            )

    async def _check_and_claim(
        self, conn: Conn, row: asyncpg.Record, migration: asyncpg.Record
    ) -> str | None:
        """Why the destination cannot take the server now; None once its room is claimed."""
        refusal = await live_db.target_refusal(
            conn,
            server_id=row["id"],
            source=migration["source_host"],
            dest=migration["dest_host"],
            down_after_s=self.down_after_s,
        )
        if refusal is not None:
            return refusal
        return await live_db.claim(
            conn,
            migration["dest_host"],
            live_db.resources(migration),
            self.ratios,
            check_disk=not migration["disk_over_commit"],
        )

    # --- the reports of the steps --------------------------------------------------------

    async def apply_report(self, report: LiveMigrationReport) -> bool:
        """Apply ``report`` if it is the one its migration waits for; False otherwise."""
        assert report.server_id is not None
        async with self.pool.acquire() as conn, conn.transaction():
            row = await servers.lock(conn, report.server_id, None)
            migration = await live_db.get(conn, report.migration_id)
            if (
                migration is None
                or migration["server_id"] != report.server_id
                or migration["action_id"] != report.action_id
            ):
                log.warning("refusing %s report of unknown live migration", report.step)
                return False
            if _abandoned(row, migration):
                await _abandon(conn, self.bus, row, migration, report)
                return False
            assert row is not None
            refusal = await _refusal(conn, migration, report)
            if refusal is not None:
                log.warning(
                    "refusing %s report for server %s from %s: %s",
                    report.step,
                    report.server_id,
                    report.host,
                    refusal,
                )
                return False
            outcome = await _APPLY[report.step](_Step(conn, self.bus, row, migration, report))
            if outcome is not None:
                await actions.finish(
                    conn, report.action_id, success=outcome.success, message=outcome.message
                )
        return True


def _waiting_to_start(
    row: asyncpg.Record | None, migration: asyncpg.Record | None, request: LiveMigrateServer
) -> bool:
    return (
        row is not None
        and migration is not None
        and row["task_state"] == TaskState.MIGRATING
        and row["host"] == migration["source_host"]
        and migration["action_id"] == request.action_id
        and migration["status"] == Status.ACCEPTED
    )


async def _not_started(
    conn: Conn, request: LiveMigrateServer, migration: asyncpg.Record, reason: str
) -> None:
    """The destination cannot take the server: it stays as it was, ACTIVE on the source,
    with the reason recorded as a fault (400: the request named an unusable host)."""
    assert request.server_id is not None
    log.warning("cannot live-migrate server %s: %s", request.server_id, reason)
    await live_db.set_status(conn, migration["id"], Status.ERROR, None)
    await servers.advance(conn, request.server_id, task=None)
    await servers.add_fault(conn, request.server_id, Fault(code=400, message=reason))
    await actions.finish(conn, request.action_id, success=False, message=reason)


def _abandoned(row: asyncpg.Record | None, migration: asyncpg.Record) -> bool:
    """Was the server deleted, or did its task end, while the migration was under way?"""
    if row is None:
        return True
    return row["task_state"] != TaskState.MIGRATING and migration["status"] in live_db.UNDER_WAY


async def _refusal(
    conn: Conn, migration: asyncpg.Record, report: LiveMigrationReport
) -> str | None:
    """Why the report is not the one the migration waits for now; None when it is (the
    server, not abandoned, runs the migration's task)."""
    status, side = _AWAITED[report.step]
    if migration["status"] not in live_db.UNDER_WAY:
        return f"the live migration is over ({migration['status']})"
    if migration["status"] != status:
        return f"the live migration is {migration['status']}, not waiting for {report.step}"
    if report.host != migration[side]:
        return f"{report.step} is {migration[side]}'s to report"
    if not await actions.is_pending(conn, report.action_id):
        return f"its action {report.action_id} is over"
    return None


async def _abandon(
    conn: Conn,
    bus: Bus,
    row: asyncpg.Record | None,
    migration: asyncpg.Record,
    report: LiveMigrationReport,
) -> None:
    """The server was deleted (or is being deleted), or its task ended (os-resetState),
    while its live migration ran: the migration ends, its claim given back (a deletion did
    that already). A deleted server is destroyed on the host it is accounted on; if that is
    still the source, the destination may hold it too, and is told to destroy it."""
    log.warning(
        "live migration %s of server %s was abandoned (%s); ignoring its %s report",
        migration["id"],
        report.server_id,
        "server deleted" if row is None else f"task {row['task_state']}",
        report.step,
    )
    if migration["status"] in live_db.UNDER_WAY:
        await live_db.release_held(conn, migration)
        await live_db.set_status(conn, migration["id"], Status.ERROR, None)
    going = row is None or row["task_state"] == TaskState.DELETING
    if going and report.step in _DEST_MAY_HOLD:
        await bus.publish(
            bus_mod.compute_queue(migration["dest_host"]),
            DestroyServer(
                request_id=report.request_id,
                server_id=report.server_id,
                action_id=report.action_id,
                domain_name=f"instance-{report.server_id}",
            ),
        )


@dataclass(frozen=True)
class _Step:
    """A legal report (or the start) of one step, and where it applies: the server's locked
    row and its live migration."""

    conn: Conn
    bus: Bus
    row: asyncpg.Record
    migration: asyncpg.Record
    report: LiveMigrationReport | None

    @property
    def source(self) -> str:
        host: str = self.migration["source_host"]
        return host

    @property
    def dest(self) -> str:
        host: str = self.migration["dest_host"]
        return host

    @property
    def instance(self) -> InstanceSpec:
        return live_db.instance(self.migration)

    @property
    def block_migration(self) -> bool:
        return bool(self.migration["block_migration"])

    @property
    def done(self) -> LiveMigrationReport:
        assert self.report is not None, "a report's step"
        return self.report

    @property
    def fault(self) -> Fault:
        return self.done.fault or Fault(message=f"{self.done.step} failed on {self.done.host}")

    def envelope(self, message: ActionMessage) -> dict[str, Any]:
        return {
            "request_id": message.request_id,
            "server_id": self.row["id"],
            "action_id": message.action_id,
            "migration_id": self.migration["id"],
        }

    async def send(self, host: str, command: ActionMessage) -> None:
        await self.bus.publish(bus_mod.compute_queue(host), command)

    async def status(self, status: Status, held: Held | None) -> None:
        await live_db.set_status(self.conn, self.migration["id"], status, held)

    async def idle(self, *, power_state: int | None = None) -> None:
        """The server's task is over (it is ACTIVE, on whichever host it is accounted)."""
        await servers.advance(self.conn, self.row["id"], task=None, power_state=power_state)


async def _prepared(step: _Step) -> Outcome | None:
    """Step 2: the destination is ready, the source migrates. A destination that could not
    prepare left nothing behind: its claim goes back, and the server never moved."""
    report = step.done
    if not report.success:
        await live_db.release_held(step.conn, step.migration)
        await step.status(Status.ERROR, None)
        await step.idle()
        await servers.add_fault(step.conn, step.row["id"], step.fault)
        return Outcome(False, step.fault.message)
    dest_uri = await live_db.hypervisor_uri(step.conn, step.dest)
    assert dest_uri is not None, "the claim was made on this host"
    await step.status(Status.RUNNING, Held.DEST)
    await step.send(
        step.source,
        LiveMigrate(
            **step.envelope(report),
            instance=step.instance,
            dest_host=step.dest,
            dest_uri=dest_uri,
            block_migration=step.block_migration,
        ),
    )
    return None


async def _migrated(step: _Step) -> Outcome | None:
    """Step 3: the server has moved (or been handed over); the destination confirms it."""
    report = step.done
    if not report.success:
        await _recover(step)
        return None
    await step.status(Status.ARRIVING, Held.DEST)
    await step.send(
        step.dest,
        FinishLiveMigration(
            **step.envelope(report), instance=step.instance, handover=report.handover
        ),
    )
    return None


async def _arrived(step: _Step) -> Outcome | None:
    """Step 4: the server runs on the destination: it is accounted there (the claim the
    migration held becomes the server's, the server's on the source the migration's) while
    the source removes what is left of it."""
    report = step.done
    if not report.success:
        await _recover(step)
        return None
    await _move_to_dest(step)
    await servers.advance(
        step.conn, step.row["id"], task=TaskState.MIGRATING.value, power_state=report.power_state
    )
    await step.status(Status.CLEANING, Held.SOURCE)
    await step.send(
        step.source,
        CleanUpLiveMigration(
            **step.envelope(report),
            instance=step.instance,
            block_migration=step.block_migration,
        ),
    )
    return None


async def _move_to_dest(step: _Step) -> None:
    """Account the server on the destination, on the claim the migration held there (the
    server's claim on the source is the caller's to give back, or to hand the migration)."""
    need = live_db.resources(step.migration)
    await servers.move(
        step.conn,
        step.row["id"],
        step.dest,
        vcpus=need.vcpus,
        ram_mb=need.ram_mb,
        disk_gb=need.disk_gb,
    )


async def _cleaned_up(step: _Step) -> Outcome:
    """Step 5: done; the source's claim goes back. A source that could not remove what was
    left of the server does not undo the migration: the failure is recorded as a fault."""
    report = step.done
    await live_db.release_held(step.conn, step.migration)
    await step.status(Status.CONFIRMED, None)
    await step.idle()
    log.info("server %s live-migrated from %s to %s", step.row["id"], step.source, step.dest)
    if report.success:
        return Outcome(True)
    await servers.add_fault(step.conn, step.row["id"], step.fault)
    return Outcome(
        True,
        f"migrated to {step.dest}; {step.source} could not clean up: {step.fault.message}",
    )


async def _recover(step: _Step) -> None:
    """The migration or its confirmation failed: first the source makes sure the server
    runs there (the destination's copy, if any, stays until then)."""
    log.warning(
        "live migration of %s to %s failed at %s; recovering it on %s",
        step.row["id"],
        step.dest,
        step.done.step,
        step.source,
    )
    await servers.add_fault(step.conn, step.row["id"], step.fault)
    await step.status(Status.RECOVERING, Held.DEST)
    await step.send(
        step.source, RecoverLiveMigration(**step.envelope(step.done), instance=step.instance)
    )


async def _recovered(step: _Step) -> Outcome | None:
    """The server runs on the source again: the destination removes what it holds.

    If the source does not have it any more, the hypervisor did move it, and the destination
    is the only place it can be, though it could not confirm it runs: the server is accounted
    there, in ERROR, and nothing is removed anywhere (a delete, or a hard reboot, then acts
    on the destination)."""
    report = step.done
    if not report.success:
        await _move_to_dest(step)
        await hosts.release(step.conn, step.source, live_db.resources(step.migration))
        await servers.set_error(
            step.conn, step.row["id"], step.fault, expected_task=TaskState.MIGRATING.value
        )
        await step.status(Status.ERROR, None)
        return Outcome(False, step.fault.message)
    await servers.advance(
        step.conn, step.row["id"], task=TaskState.MIGRATING.value, power_state=report.power_state
    )
    await step.status(Status.ROLLING_BACK, Held.DEST)
    await step.send(
        step.dest,
        RollBackLiveMigration(
            **step.envelope(report),
            instance=step.instance,
            block_migration=step.block_migration,
        ),
    )
    return None


async def _rolled_back(step: _Step) -> Outcome:
    """The destination removed what it held (or failed to, recorded as a fault): its claim
    goes back, and the server is ACTIVE on the source again. The migration failed."""
    report = step.done
    await live_db.release_held(step.conn, step.migration)
    await step.status(Status.ERROR, None)
    await step.idle()
    if not report.success:
        await servers.add_fault(step.conn, step.row["id"], step.fault)
    return Outcome(
        False, f"the live migration to {step.dest} failed; the server runs on {step.source}"
    )


_APPLY: dict[LiveMigrationStep, Callable[[_Step], Awaitable[Outcome | None]]] = {
    "prepare": _prepared,
    "migrate": _migrated,
    "finish": _arrived,
    "clean_up": _cleaned_up,
    "recover": _recovered,
    "roll_back": _rolled_back,
}
