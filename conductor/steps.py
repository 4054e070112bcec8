"""Workflows of several commands across two hosts, driven one step at a time: a resize
(conductor/resize.py) and a live migration (conductor/live_migration.py) are two instances
of one shape, ``StepMachine`` (docs/architecture.md, *State*).

Each runs on a record in ``migrations`` naming a source and a destination host. A step is one
command to one of them; its report, once applied, moves the record on and sends the next
command. The command is published before the transaction commits: if publishing fails,
nothing is committed and the report comes again; if the commit fails after publishing, the
host runs the step twice, which its driver makes harmless. A machine says three things:

* which step its record awaits now (``awaited``): the command whose report ends it;
* which of the record's hosts reports it (``Step.reporter``). A report is legal only when it
  is that one (conductor/legality.py), so a duplicate or a step long past changes nothing;
* how it is abandoned when its server was deleted, or its task ended, while a report was on
  its way (``abandon``). A task ended from outside (os-resetState, the reaper) ends the
  record in the same transaction, as the record's own shared/db module says
  (shared/db/abandon.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from conductor.outcome import Outcome
from shared.bus import Bus
from shared.db import actions, server_migrations, servers
from shared.db.pool import Conn
from shared.db.records import LockedServer, MigrationRecord
from shared.messages import ActionMessage, CommandReport, Fault
from shared.rpcapi import ComputeClient, Envelope
from shared.states import TaskState

#: The column of a record naming the host whose report a step awaits.
Reporter = Literal["source_host", "dest_host"]


def reporter_host(record: MigrationRecord, reporter: Reporter) -> str | None:
    """The host of ``record`` that reports a step (``Step.reporter``)."""
    return record.source_host if reporter == "source_host" else record.dest_host


@dataclass(frozen=True)
class StepReport:
    """A legal report of one step, and where it applies: the server's locked row and the
    machine's record, locked too."""

    conn: Conn
    bus: Bus
    row: LockedServer
    record: MigrationRecord
    report: CommandReport

    @property
    def source(self) -> str:
        return self.record.source_host

    @property
    def dest(self) -> str:
        return self.record.placed_dest

    @property
    def fault(self) -> Fault:
        """The report's fault, or one that names the failed step."""
        return self.report.fault or Fault(
            message=f"{self.report.command} failed on {self.report.host}"
        )

    @property
    def envelope(self) -> Envelope:
        """What the next step's command carries on from this report."""
        return Envelope(self.report.request_id, self.row.id, self.report.action_id)

    def host(self, name: str) -> ComputeClient:
        """The client of the host ``name``, to send it the next step's command."""
        return ComputeClient(self.bus, name)


#: What a step's report does; the outcome of the user's action when the step ends it, None
#: when the action goes on.
Apply = Callable[[StepReport], Awaitable[Outcome | None]]


@dataclass(frozen=True)
class Step:
    """A step a record awaits: the command whose report ends it, the record's column naming
    the host that reports it, and what the report does."""

    command: str
    reporter: Reporter
    apply: Apply


@dataclass(frozen=True)
class Abandoned:
    """A report that may have come after its machine was abandoned: the server's locked row
    (None: deleted) and the record the report names, locked."""

    conn: Conn
    bus: Bus
    row: LockedServer | None
    record: MigrationRecord
    report: CommandReport


@dataclass(frozen=True)
class StepMachine:
    """The shape of a workflow of steps (see the module's docstring)."""

    #: for people: "resize", "live migration"
    name: str
    #: the server's tasks while the machine runs: a report ending one of them is its
    tasks: frozenset[TaskState]
    #: the record a report names, locked, if it is its server's (None: refused as unknown)
    record: Callable[[Conn, CommandReport], Awaitable[MigrationRecord | None]]
    #: the step a record awaits while the server (its locked row) is as it is, or why none
    awaited: Callable[[LockedServer, MigrationRecord], Step | str]
    #: if the machine was abandoned, end it and do what that takes: True (the report is then
    #: refused); False when it runs on
    abandon: Callable[[Abandoned], Awaitable[bool]]


async def not_started(
    conn: Conn, request: ActionMessage, migration: MigrationRecord, error: StrEnum, fault: Fault
) -> None:
    """A migration that could not start: it is in ``error`` (its kind's), the server stays as
    it was with ``fault`` recorded and no task, and its action has failed."""
    assert request.server_id is not None
    await server_migrations.set_state(conn, migration.id, error, None)
    await servers.advance(conn, request.server_id, task=None)
    await servers.add_fault(conn, request.server_id, fault)
    await actions.finish(conn, request.action_id, success=False, message=fault.message)
