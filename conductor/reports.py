"""Apply what hosts report of the commands they ran: the only way a server's state follows
its host.

Every report is judged the same way (conductor/legality.py); what differs is only what the
server awaits, which this module works out from the task the report says it ends:

* a task of one step (``COMPLETIONS``): the server's own task, from its own host;
* a snapshot's or a backup's task: the same, and the report finishes the image too
  (conductor/snapshots.py; a backup's also rotates the server's backups,
  conductor/backups.py);
* a task of a step machine (a resize's, a live migration's, conductor/steps.py): the step
  its record awaits, from the host whose step it is; its report may lead to the next
  command, published before the transaction commits;
* no task (resetNetwork, injectNetworkInfo, which run beside any task): an action pending
  on the server's host. It closes the action, and a failure is recorded as a fault of the
  server, whose state does not change.

The user's action is closed with the report that ends it.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from conductor import backups, legality, resize, snapshots
from conductor.legality import Awaited
from conductor.live_migration import LIVE_MIGRATION
from conductor.outcome import Outcome
from conductor.resize import RESIZE
from conductor.steps import Abandoned, StepMachine, StepReport, reporter_host
from shared.bus import Bus
from shared.db import actions, hosts, ipam, servers
from shared.db.group_commit import GroupCommit
from shared.db.hosts import Resources
from shared.db.pool import Conn
from shared.db.records import LockedServer
from shared.messages import CommandReport, Fault
from shared.states import COMPLETIONS, TaskState, may_end

log = logging.getLogger(__name__)

#: The step machines, each with the tasks its reports end.
MACHINES: tuple[StepMachine, ...] = (RESIZE, LIVE_MIGRATION)

Apply = Callable[[], Awaitable[Outcome | None]]


class Reports:
    """Applies what hosts report. The successes that end a task of one step (every boot's
    report) are applied by one statement for all the reports that come at once
    (``servers.complete_awaited_tasks`` as a group commit, shared/db/group_commit.py): a
    storm's reports, a batch at a time off the bus, cost a round trip and a commit a group
    instead of one each."""

    def __init__(self, pool: asyncpg.Pool, bus: Bus) -> None:
        self.pool = pool
        self.bus = bus
        self.completions = GroupCommit(
            pool, servers.complete_awaited_tasks, key=lambda c: c.server_id
        )

    async def apply(self, report: CommandReport) -> bool:
        """Apply ``report`` if it is the one its server awaits; False when it was refused.
        The bus carries the command of a step machine's next step, if any."""
        assert report.server_id is not None
        if _completes_at_once(report) and await self.completions.submit(_completion(report)):
            return True
        async with self.pool.acquire() as conn:
            return await _judge_and_apply(conn, self.bus, report)


def _completes_at_once(report: CommandReport) -> bool:
    """Whether ``report`` is a success ending a task of one step (a spawn's, a reboot's...),
    whose legality the statement that applies it can judge alone: the server is live, runs
    the task the report ends, on the reporting host, and the action is pending, as
    ``legality.refusal`` judges it with the server's own task and host awaited. That is
    every report of a boot, done in one round trip instead of five (BEGIN, the row lock, the
    action's check, the change, COMMIT)."""
    task = report.task_state
    return (
        report.success
        and task is not None
        and task in COMPLETIONS
        and task != TaskState.DELETING
        and task not in _APPLY
        and not any(task in machine.tasks for machine in MACHINES)
        and report.action_id is not None
        and may_end(report.command, task)
    )


def _completion(report: CommandReport) -> servers.Completion:
    """The completion a report ``_completes_at_once`` asks for: applied only if it is the one
    the server awaits (else ``_judge_and_apply`` says why not)."""
    assert report.server_id is not None and report.task_state is not None
    assert report.action_id is not None
    return servers.Completion(
        server_id=report.server_id,
        task=report.task_state,
        host=report.host,
        action_id=report.action_id,
        vm_state=COMPLETIONS[TaskState(report.task_state)].vm_state,
        power_state=report.power_state,
        action_message=Outcome.of(report).message,
    )


async def _judge_and_apply(conn: Conn, bus: Bus, report: CommandReport) -> bool:
    """Apply ``report`` under its server's row lock, if ``legality.refusal`` finds it is the
    one the server awaits; False when it was refused."""
    assert report.server_id is not None
    async with conn.transaction():
        row = await servers.lock(conn, report.server_id, None)
        awaited, apply = await _awaited(conn, bus, row, report)
        refusal = await legality.refusal(conn, report, awaited)
        if refusal is not None:
            log.warning(
                "refusing %s report for server %s from %s: %s",
                report.command,
                report.server_id,
                report.host,
                refusal,
            )
            return False
        outcome = await apply()
        if outcome is not None and not outcome.closed:
            await actions.finish(
                conn, report.action_id, success=outcome.success, message=outcome.message
            )
    return True


async def _awaited(
    conn: Conn, bus: Bus, row: LockedServer | None, report: CommandReport
) -> tuple[Awaited, Apply]:
    """What the server awaits, and what applying ``report`` does if it is that."""
    machine = next((m for m in MACHINES if report.task_state in m.tasks), None)
    if machine is not None:
        return await _awaited_step(conn, bus, row, report, machine)
    if row is None:
        return Awaited.nothing("server is gone"), _never
    # an action beside any task awaits no task of its own
    task = row.task_state if report.task_state is not None else None
    apply = _APPLY.get(report.task_state, _finish_task)
    return Awaited(task=task, host=row.host), functools.partial(apply, conn, bus, row, report)


async def _awaited_step(
    conn: Conn,
    bus: Bus,
    row: LockedServer | None,
    report: CommandReport,
    machine: StepMachine,
) -> tuple[Awaited, Apply]:
    record = await machine.record(conn, report)
    if record is None:
        return Awaited.nothing(f"it names no {machine.name} of the server's"), _never
    if await machine.abandon(Abandoned(conn, bus, row, record, report)):
        return Awaited.nothing(f"its {machine.name} was abandoned"), _never
    if row is None:
        return Awaited.nothing("server is gone"), _never
    step = machine.awaited(row, record)
    if isinstance(step, str):
        return Awaited.nothing(step), _never
    awaited = Awaited(
        task=row.task_state, host=reporter_host(record, step.reporter), command=step.command
    )
    return awaited, functools.partial(step.apply, StepReport(conn, bus, row, record, report))


async def _never() -> Outcome | None:
    raise AssertionError("a report that awaits nothing is refused, never applied")


# --- tasks of one step, and actions beside any task ------------------------------------------


async def _finish_task(conn: Conn, bus: Bus, row: LockedServer, report: CommandReport) -> Outcome:
    """A task of one step is over: the state COMPLETIONS names, or a failure's."""
    assert row.task_state is not None  # the one the report ends (conductor/legality.py)
    task = TaskState(row.task_state)
    held = Resources(row.vcpus, row.ram_mb, row.disk_gb)
    if not report.success:
        await _fail(conn, report, task, held)
        return Outcome.of(report)
    if task is not TaskState.DELETING:
        return await _complete(conn, report, task)
    leftovers = await resize.leftover_originals(conn, row)
    await _deleted(conn, report, held)
    await resize.destroy_leftovers(bus, report, leftovers)
    return Outcome.of(report)


async def _complete(conn: Conn, report: CommandReport, task: TaskState) -> Outcome:
    """The task is done: the state COMPLETIONS names, and its action closed as the report
    says, in one statement (the ``closed`` outcome)."""
    assert report.server_id is not None
    outcome = Outcome.of(report)
    done = COMPLETIONS[task]
    await servers.complete_task(
        conn,
        report.server_id,
        vm_state=done.vm_state,
        power_state=report.power_state,
        action_id=report.action_id,
        action_message=outcome.message,
    )
    return dataclasses.replace(outcome, closed=True)


async def _deleted(conn: Conn, report: CommandReport, held: Resources) -> None:
    """The server's host destroyed it: deleted, its claim and addresses given back."""
    assert report.server_id is not None
    await servers.mark_deleted(conn, report.server_id)
    await hosts.release(conn, report.host, held)
    await ipam.release(conn, report.server_id)


async def _fail(conn: Conn, report: CommandReport, task: TaskState, held: Resources) -> None:
    assert report.server_id is not None
    fault = report.fault or Fault(message=f"{task.value} failed on {report.host}")
    done = COMPLETIONS.get(task)
    if done is not None and done.failure_keeps_state:
        # the guest is as it was (a pause, suspend... that did not happen): the task ends
        await servers.advance(conn, report.server_id, task=None, power_state=report.power_state)
        await servers.add_fault(conn, report.server_id, fault)
        return
    await servers.set_error(conn, report.server_id, fault, expected_task=task.value)
    if task is TaskState.SPAWNING:
        # the agent cleaned up what it had built: the host no longer holds the server
        await hosts.release(conn, report.host, held)
        await servers.unassign_host(conn, report.server_id)


async def _snapshot(conn: Conn, bus: Bus, row: LockedServer, report: CommandReport) -> Outcome:
    await snapshots.apply_report(conn, row, report)
    return Outcome.of(report)


async def _backup(conn: Conn, bus: Bus, row: LockedServer, report: CommandReport) -> Outcome:
    await backups.apply_report(conn, row, report)
    return Outcome.of(report)


async def _close_action(conn: Conn, bus: Bus, row: LockedServer, report: CommandReport) -> Outcome:
    """An action beside any task is over: the server's state does not change, a failure is
    recorded as its fault."""
    if report.fault is not None:
        await servers.add_fault(conn, row.id, report.fault)
    return Outcome.of(report)


TaskApply = Callable[[Conn, Bus, LockedServer, CommandReport], Awaitable[Outcome]]

#: How a legal report of a task that is no step machine's is applied, by its task (None: an
#: action beside any task); any other task is one of one step (``COMPLETIONS``).
_APPLY: dict[str | None, TaskApply] = {
    None: _close_action,
    TaskState.IMAGE_SNAPSHOT: _snapshot,
    TaskState.IMAGE_BACKUP: _backup,
}
