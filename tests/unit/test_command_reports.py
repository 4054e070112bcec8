"""Every command a host runs for an action is answered by one report, which says the task
the command ended as the shared state table says (shared/states.py), never as the agent
would guess; on the fake hypervisor and the in-process bus."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from compute_agent.service import AgentService
from compute_agent.virt.fake import FakeDriver
from shared.bus.memory import MemoryBus
from shared.messages import (
    ActionMessage,
    CommandReport,
    FlavorSpec,
    ImageSpec,
    InstanceSpec,
    Message,
    PauseServer,
    RebootServer,
    ResetNetwork,
    RevertResize,
    SnapshotServer,
    UnpauseServer,
)
from shared.rpcapi import domain_name
from shared.states import ACTIONS, COMMAND_TASKS, PowerState, TaskState, may_end, task_ended_by
from tests.support.agents import reporting_agent

HOST = "reporting-host"


@pytest.fixture
async def agent() -> AsyncIterator[tuple[AgentService, FakeDriver, list[Message]]]:
    async with reporting_agent(HOST) as the_agent:
        yield the_agent


async def _running_server(driver: FakeDriver) -> InstanceSpec:
    instance = InstanceSpec(
        server_id=uuid.uuid4(),
        name="web",
        flavor=FlavorSpec(id="1", name="m1.tiny", vcpus=1, ram_mb=512, disk_gb=1),
        image=ImageSpec(id=uuid.uuid4(), name="cirros"),
    )
    await driver.spawn(instance, "pw")
    return instance


async def _report_of(
    agent: AgentService, reports: list[Message], command: ActionMessage
) -> CommandReport:
    await agent.handle(command)
    for _ in range(100):
        if reports:
            break
        await asyncio.sleep(0.01)
    (report,) = reports
    reports.clear()
    assert isinstance(report, CommandReport)
    assert (report.command, report.host, report.action_id) == (
        command.type,
        HOST,
        command.action_id,
    )
    return report


def test_the_table_names_every_command_the_agent_runs_for_an_action() -> None:
    agent = AgentService(HOST, MemoryBus(), FakeDriver())
    handled = {kind.model_fields["type"].default for kind in agent._handlers}
    assert handled == set(COMMAND_TASKS) | {"purge_servers", "probe_servers"}


def test_a_command_ends_the_task_its_action_set() -> None:
    assert task_ended_by("pause_server") is ACTIONS["pause"].task
    assert task_ended_by("reboot_server") is TaskState.REBOOTING
    assert task_ended_by("reboot_server", hard=True) is TaskState.REBOOTING_HARD
    assert task_ended_by("reset_network") is None  # it runs beside any task
    assert may_end("reboot_server", "rebooting_hard") and may_end("reset_network", None)
    assert not may_end("reset_network", "rebooting") and not may_end("teleport", None)
    with pytest.raises(KeyError):
        task_ended_by("probe_servers")


async def test_each_report_says_the_task_the_table_gives(
    agent: tuple[AgentService, FakeDriver, list[Message]],
) -> None:
    the_agent, driver, reports = agent
    instance = await _running_server(driver)
    envelope = {"server_id": instance.server_id, "action_id": uuid.uuid4()}
    name = domain_name(instance.server_id)

    paused = await _report_of(the_agent, reports, PauseServer(**envelope, domain_name=name))
    assert (paused.task_state, paused.success, paused.migration_id) == ("pausing", True, None)

    hard = RebootServer(**envelope, instance=instance, hard=True)
    assert (await _report_of(the_agent, reports, hard)).task_state == "rebooting_hard"

    reset = ResetNetwork(**envelope, domain_name=name, addresses=[])
    assert (await _report_of(the_agent, reports, reset)).task_state is None

    migration_id = uuid.uuid4()
    revert = RevertResize(**envelope, migration_id=migration_id, domain_name=name)
    reverted = await _report_of(the_agent, reports, revert)
    assert (reverted.task_state, reverted.migration_id) == ("resize_reverting", migration_id)


async def test_a_failed_command_reports_its_task_with_the_fault(
    agent: tuple[AgentService, FakeDriver, list[Message]],
) -> None:
    the_agent, driver, reports = agent  # an agent without an image store
    instance = await _running_server(driver)
    image_id = uuid.uuid4()
    snapshot = SnapshotServer(
        server_id=instance.server_id,
        action_id=uuid.uuid4(),
        domain_name=domain_name(instance.server_id),
        image_id=image_id,
    )
    failed = await _report_of(the_agent, reports, snapshot)
    assert (failed.task_state, failed.success) == ("image_snapshot", False)
    assert failed.fault is not None and "image store" in failed.fault.message
    # the image it was to write is named, so the conductor can put it in ERROR
    assert failed.snapshot is not None and failed.snapshot.image_id == image_id
    assert failed.power_state == 1  # what the hypervisor says after the failure: running


async def test_a_copy_of_a_command_done_is_not_done_again(
    agent: tuple[AgentService, FakeDriver, list[Message]],
) -> None:
    """Delivery is at least once: the copy of a pause that arrives after the unpause that
    followed it (a redelivery, a late retry) must not pause the server again, nor report."""
    the_agent, driver, reports = agent
    instance = await _running_server(driver)
    name = domain_name(instance.server_id)
    pause = PauseServer(server_id=instance.server_id, action_id=uuid.uuid4(), domain_name=name)
    await _report_of(the_agent, reports, pause)
    unpause = UnpauseServer(server_id=instance.server_id, action_id=uuid.uuid4(), domain_name=name)
    await _report_of(the_agent, reports, unpause)
    await the_agent.handle(pause)  # the same message again (same message_id)
    await asyncio.sleep(0.05)
    assert reports == []
    assert await driver.power_state(name) is PowerState.RUNNING
