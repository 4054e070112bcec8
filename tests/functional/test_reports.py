"""The conductor applies only legal reports: right host, task still running."""

from __future__ import annotations

import uuid

from conductor.reports import Reports
from shared.messages import CommandReport
from stratus.system import System
from tests.conftest import IMAGE
from tests.support.client import ComputeClient


def _report(
    server_id: str, host: str, command: str, task: str, success: bool = True
) -> CommandReport:
    return CommandReport(
        server_id=uuid.UUID(server_id),
        action_id=uuid.uuid4(),
        host=host,
        command=command,
        task_state=task,
        success=success,
        power_state=0,
    )


async def test_reports_that_are_stale_or_from_another_host_change_nothing(
    api: ComputeClient, system: System
) -> None:
    assert system.pool is not None and system.bus is not None
    server_id = (await api.create_server("guarded", IMAGE)).body["server"]["id"]
    before = await api.wait_for_status(server_id, "ACTIVE")

    # a redelivered build report, a destroy nobody asked for, a report from another host
    for report in (
        _report(server_id, "functional-host", "spawn_server", "spawning", success=False),
        _report(server_id, "functional-host", "destroy_server", "deleting"),
        _report(server_id, "evil-host", "destroy_server", "deleting"),
        _report(server_id, "functional-host", "reboot_server", "not-a-task"),
        _report(str(uuid.uuid4()), "functional-host", "spawn_server", "spawning"),
    ):
        assert await Reports(system.pool, system.bus).apply(report) is False

    after = (await api.get(f"/servers/{server_id}")).body["server"]
    assert after == before
    await api.delete_and_wait(server_id)
