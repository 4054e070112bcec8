"""Whether what a host says may change a server now: the rules every report is judged by.

A command's report (``CommandReport``) is legal only if it is the report the server awaits
(``Awaited``): the server exists, the report ends the task the server runs (the task its
command ends, shared/states.py), it is of the command the server's step machine awaits when
one is under way (conductor/steps.py), it comes from the host whose report that is, and the
action it serves is still pending. Anything else (a redelivered report, a report from the
wrong host, a task overtaken by a delete or by a later action of the same kind, a step long
past) is refused and logged, so state never moves backwards and a compromised host can only
speak for its own servers. ``refusal`` is that check, the only one: what differs between
reports is only what the server awaits, which conductor/reports.py works out. (The success
of a task of one step, every boot's report, is first tried by one statement that applies it
only under the same rules, the server's own task and host awaited and the action pending:
``servers.complete_awaited_tasks``; what it does not apply is judged here, which says why.)

What a hypervisor says unasked (a guest's power) is no report of a command: it may change a
server only if the server is on that host, runs no task, and has not changed since the host
looked (``observation_refusal``), so it never overtakes an action, nor an older look a newer
change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.db import actions
from shared.db.pool import Conn
from shared.db.records import ServerStates
from shared.messages import CommandReport
from shared.states import may_end


@dataclass(frozen=True)
class Awaited:
    """The report a server waits for now: one that ends ``task`` (None: an action that
    runs beside any task), from ``host``, of ``command`` when a step machine awaits a given
    one (None: any command that ends ``task``). ``why_not``: why it waits for no report at
    all (the server is gone, its step machine's record is over...)."""

    task: str | None = None
    host: str | None = None
    command: str | None = None
    why_not: str | None = None

    @classmethod
    def nothing(cls, why: str) -> Awaited:
        return cls(why_not=why)


async def refusal(conn: Conn, report: CommandReport, awaited: Awaited) -> str | None:
    """Why ``report`` may not be applied now; None when it may."""
    if awaited.why_not is not None:
        return awaited.why_not
    if not may_end(report.command, report.task_state):
        return f"{report.command} does not end {report.task_state or 'no task'}"
    if report.task_state != awaited.task:
        return f"server is doing {awaited.task or 'no task'}"
    if awaited.command is not None and report.command != awaited.command:
        return f"{awaited.command} is awaited"
    if report.host != awaited.host:
        return f"{report.command} is {awaited.host or 'no host'}'s to report"
    if not await actions.is_pending(conn, report.action_id):
        return f"its action {report.action_id} is over"
    return None


def observation_refusal(
    row: ServerStates | None, host: str, *, looked_after: datetime | None
) -> str | None:
    """Why a hypervisor's observation may not change the server ``row`` now; None when it
    may. ``looked_after`` None: the moment of the look is unknown (a hint), so not judged."""
    if row is None:
        return "server is gone"
    if row.host != host:
        return f"server is on {row.host}"
    if row.task_state is not None:
        return f"server is doing {row.task_state}"
    if looked_after is not None and row.updated_at >= looked_after:
        return "server changed after the host looked"
    return None
