"""The one check every host's report of a command passes (conductor/legality.py): legal only
if it is the report the server awaits, whatever kind of command it reports on; and the rule
for what a hypervisor says unasked."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from conductor.legality import Awaited, observation_refusal, refusal
from shared.db.records import ServerStates
from shared.messages import CommandReport


class _Actions:
    """A connection that answers whether the report's action is still pending."""

    def __init__(self, *, pending: bool) -> None:
        self.pending = pending
        self.asked = 0

    async def fetchval(self, query: str, *args: Any) -> object:
        assert "actions" in query
        self.asked += 1
        return 1 if self.pending else None


def _report(command: str, task: str | None, host: str = "h1") -> CommandReport:
    return CommandReport(
        server_id=uuid.uuid4(),
        action_id=uuid.uuid4(),
        host=host,
        command=command,
        task_state=task,
        success=True,
    )


async def _refusal(report: CommandReport, awaited: Awaited, *, pending: bool = True) -> str | None:
    return await refusal(_Actions(pending=pending), report, awaited)


@pytest.mark.parametrize(
    ("report", "awaited"),
    [
        # a task of one step, from the server's host
        (_report("pause_server", "pausing"), Awaited(task="pausing", host="h1")),
        # a HARD reboot is the same command and ends its own task
        (_report("reboot_server", "rebooting_hard"), Awaited(task="rebooting_hard", host="h1")),
        # an action beside any task awaits none
        (_report("reset_network", None), Awaited(task=None, host="h1")),
        # a step machine's step, of the command it awaits, from the host whose step it is
        (
            _report("finish_resize", "resize_finish", host="dest"),
            Awaited(task="resize_finish", host="dest", command="finish_resize"),
        ),
    ],
)
async def test_the_awaited_report_is_legal(report: CommandReport, awaited: Awaited) -> None:
    assert await _refusal(report, awaited) is None


@pytest.mark.parametrize(
    ("report", "awaited", "why"),
    [
        (_report("pause_server", "pausing"), Awaited.nothing("server is gone"), "gone"),
        # the task it says it ended is not its command's
        (_report("pause_server", "deleting"), Awaited(task="deleting", host="h1"), "not end"),
        (_report("reboot_server", "not-a-task"), Awaited(task="not-a-task", host="h1"), "not end"),
        (_report("reset_network", "rebooting"), Awaited(task="rebooting", host="h1"), "not end"),
        # the server does something else (a late report, overtaken by a delete)
        (_report("pause_server", "pausing"), Awaited(task="deleting", host="h1"), "doing"),
        (_report("pause_server", "pausing"), Awaited(task=None, host="h1"), "doing"),
        # from another host than the one whose report it is
        (_report("pause_server", "pausing", host="evil"), Awaited("pausing", "h1"), "h1's"),
        # a step machine awaits another step than the one reported
        (
            _report("revert_resize", "resize_reverting", host="src"),
            Awaited(task="resize_reverting", host="src", command="finish_revert_resize"),
            "finish_revert_resize",
        ),
    ],
)
async def test_any_other_report_is_refused_saying_why(
    report: CommandReport, awaited: Awaited, why: str
) -> None:
    refused = await _refusal(report, awaited)
    assert refused is not None and why in refused


async def test_a_report_of_an_action_that_is_over_is_refused_last() -> None:
    report = _report("pause_server", "pausing")
    assert "is over" in (await _refusal(report, Awaited("pausing", "h1"), pending=False) or "")
    # the action is asked about only once everything else holds: a cheap refusal first
    actions = _Actions(pending=False)
    await refusal(actions, report, Awaited("deleting", "h1"))
    assert actions.asked == 0


_NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _row(**values: Any) -> ServerStates:
    fields: dict[str, Any] = {
        "id": uuid.uuid4(),
        "host": "h1",
        "vm_state": "active",
        "task_state": None,
        "power_state": 1,
        "updated_at": _NOW,
    }
    return ServerStates(**{**fields, **values})


@pytest.mark.parametrize(
    ("row", "looked_after", "why"),
    [
        (None, None, "gone"),
        (_row(host="h2"), None, "on h2"),
        (_row(task_state="rebooting"), None, "doing rebooting"),
        (_row(), _NOW, "changed after"),
        (_row(), _NOW - timedelta(seconds=1), "changed after"),
    ],
)
def test_an_observation_changes_only_an_idle_server_on_its_host_unchanged_since(
    row: ServerStates | None, looked_after: datetime | None, why: str
) -> None:
    refused = observation_refusal(row, "h1", looked_after=looked_after)
    assert refused is not None and why in refused
    if row is not None and looked_after is not None:
        later = looked_after + timedelta(seconds=2)
        assert observation_refusal(row, "h1", looked_after=later) is None
    assert observation_refusal(_row(), "h1", looked_after=None) is None
