"""Resize and live migration are two instances of one step-machine shape
(conductor/steps.py): for every state of its record a machine awaits one step, the report of
one command from one of the record's two hosts, and nothing once the record is over."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from conductor.live_migration import LIVE_MIGRATION
from conductor.reports import MACHINES
from conductor.resize import RESIZE
from conductor.steps import Step, StepMachine
from shared.db.live_migrations import UNDER_WAY
from shared.db.live_migrations import Status as Live
from shared.db.records import LockedServer, MigrationRecord
from shared.db.server_migrations import Status as Resize
from shared.states import COMMAND_TASKS, STEPPED_TASKS, TaskState, task_ended_by

_NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _server(task: str | None, vm_state: str = "active") -> LockedServer:
    return LockedServer(
        id=uuid.uuid4(),
        tenant_id="p1",
        host="a",
        vm_state=vm_state,
        task_state=task,
        locked=False,
        locked_by=None,
        vcpus=1,
        ram_mb=512,
        disk_gb=1,
    )


def _record(status: str, *, dest: str = "b") -> MigrationRecord:
    return MigrationRecord(
        id=uuid.uuid4(),
        server_id=uuid.uuid4(),
        action_id=uuid.uuid4(),
        source_host="a",
        dest_host=dest,
        instance={},
        status=status,
        held=None,
        created_at=_NOW,
        updated_at=_NOW,
    )


def _awaited(machine: StepMachine, server: LockedServer, record: MigrationRecord) -> Any:
    return machine.awaited(server, record)


def _step(awaited: Any) -> tuple[str, str]:
    assert isinstance(awaited, Step), awaited
    return awaited.command, awaited.reporter


def test_every_stepped_task_but_a_snapshot_s_belongs_to_one_machine() -> None:
    assert MACHINES == (RESIZE, LIVE_MIGRATION)
    assert not RESIZE.tasks & LIVE_MIGRATION.tasks
    images = {TaskState.IMAGE_SNAPSHOT, TaskState.IMAGE_BACKUP}
    assert RESIZE.tasks | LIVE_MIGRATION.tasks == STEPPED_TASKS - images


@pytest.mark.parametrize(
    ("status", "command", "reporter"),
    [
        (Live.PREPARING, "prepare_live_migration", "dest_host"),
        (Live.RUNNING, "live_migrate", "source_host"),
        (Live.ARRIVING, "finish_live_migration", "dest_host"),
        (Live.CLEANING, "clean_up_live_migration", "source_host"),
        (Live.RECOVERING, "recover_live_migration", "source_host"),
        (Live.ROLLING_BACK, "roll_back_live_migration", "dest_host"),
    ],
)
def test_a_live_migration_awaits_one_step_per_status(
    status: Live, command: str, reporter: str
) -> None:
    awaited = _awaited(LIVE_MIGRATION, _server("migrating"), _record(status))
    assert _step(awaited) == (command, reporter)


@pytest.mark.parametrize("status", [Live.ACCEPTED, Live.CONFIRMED, Live.ERROR])
def test_a_live_migration_not_yet_started_or_over_awaits_no_host(status: Live) -> None:
    awaited = _awaited(LIVE_MIGRATION, _server("migrating"), _record(status))
    assert isinstance(awaited, str) and status in awaited
    assert (status in UNDER_WAY) == (status == Live.ACCEPTED)


@pytest.mark.parametrize(
    ("task", "vm_state", "status", "dest", "command", "reporter"),
    [
        ("resize_migrating", "active", Resize.MIGRATING, "b", "migrate_disk", "source_host"),
        ("resize_finish", "active", Resize.POST_MIGRATING, "b", "finish_resize", "dest_host"),
        ("resize_confirming", "resized", Resize.FINISHED, "b", "confirm_resize", "source_host"),
        # a revert: another host first removes its copy, then the source restarts the original
        ("resize_reverting", "resized", Resize.FINISHED, "b", "revert_resize", "dest_host"),
        (
            "resize_reverting",
            "active",
            Resize.REVERTING,
            "b",
            "finish_revert_resize",
            "source_host",
        ),
        # on the same host only the original is restarted
        (
            "resize_reverting",
            "resized",
            Resize.FINISHED,
            "a",
            "finish_revert_resize",
            "source_host",
        ),
        # a resize that failed on its destination is rolled back on its source
        ("resize_reverting", "active", Resize.ERROR, "b", "finish_revert_resize", "source_host"),
    ],
)
def test_a_resize_awaits_one_step_per_task_and_status(
    task: str, vm_state: str, status: Resize, dest: str, command: str, reporter: str
) -> None:
    awaited = _awaited(RESIZE, _server(task, vm_state), _record(status, dest=dest))
    assert _step(awaited) == (command, reporter)


@pytest.mark.parametrize(
    ("task", "status"),
    [
        (None, Resize.FINISHED),  # VERIFY_RESIZE: the user's turn, no host's
        ("resize_finish", Resize.FINISHED),  # a finish already applied
        ("resize_migrating", Resize.ERROR),
        ("resize_confirming", Resize.CONFIRMED),
        ("resize_reverting", Resize.REVERTED),
    ],
)
def test_a_resize_awaits_nothing_out_of_step(task: str | None, status: Resize) -> None:
    assert isinstance(_awaited(RESIZE, _server(task), _record(status)), str)


def _every_step(machine: StepMachine) -> list[Step]:
    """The steps a machine may await, over every status its record may have."""
    statuses = list(Live) if machine is LIVE_MIGRATION else list(Resize)
    steps = []
    for task in machine.tasks:
        for vm_state in ("active", "resized"):
            for status in statuses:
                for dest in ("a", "b"):
                    awaited = _awaited(machine, _server(task, vm_state), _record(status, dest=dest))
                    if isinstance(awaited, Step):
                        steps.append(awaited)
    return steps


@pytest.mark.parametrize("machine", [RESIZE, LIVE_MIGRATION], ids=lambda m: m.name)
def test_each_command_of_a_machine_is_awaited_and_ends_one_of_its_tasks(
    machine: StepMachine,
) -> None:
    steps = _every_step(machine)
    assert all(task_ended_by(step.command) in machine.tasks for step in steps)
    assert all(step.reporter in ("source_host", "dest_host") for step in steps)
    own = {command for command, task in COMMAND_TASKS.items() if task in machine.tasks}
    assert {step.command for step in steps} == own
