"""What a host tells the conductors of each command it ran: one ``CommandReport``, whatever
the command.

The report says which task the command ended, as the shared state table says
(``task_ended_by``, shared/states.py), never as the agent would guess: the conductor applies
it only while the server runs that task (conductor/legality.py). A step of a resize or live
migration names its record too.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared import bus as bus_mod
from shared.bus import Bus
from shared.messages import (
    ActionMessage,
    CommandReport,
    Fault,
    RebootServer,
    SnapshotResult,
    StepCommand,
)
from shared.states import PowerState, task_ended_by


@dataclass(frozen=True)
class Done:
    """What a command leaves to report: the server's power state on this host (NOSTATE when
    the command does not say), and what some commands add: the image a snapshot wrote (or
    was to write), the handover a hypervisor that cannot migrate gives instead."""

    power: PowerState = PowerState.NOSTATE
    snapshot: SnapshotResult | None = None
    handover: str | None = None


class Reporter:
    def __init__(self, host: str, bus: Bus) -> None:
        self.host = host
        self.bus = bus

    async def report(self, command: ActionMessage, done: Done, *, error: str | None) -> None:
        """Publish the outcome of ``command``: ``done``, and failed with ``error`` if set."""
        await self.bus.publish(
            bus_mod.REPORTS,
            CommandReport(
                request_id=command.request_id,
                server_id=command.server_id,
                action_id=command.action_id,
                host=self.host,
                command=command.type,
                task_state=task_of(command),
                success=error is None,
                power_state=int(done.power),
                fault=Fault(code=500, message=error) if error is not None else None,
                migration_id=command.migration_id if isinstance(command, StepCommand) else None,
                snapshot=done.snapshot,
                handover=done.handover,
            ),
        )


def task_of(command: ActionMessage) -> str | None:
    """The task ``command`` ends (a HARD reboot ends its own); None: its action runs beside
    any task. Raises ``KeyError`` for a command no host runs for an action."""
    hard = isinstance(command, RebootServer) and command.hard
    task = task_ended_by(command.type, hard=hard)
    return task.value if task is not None else None
