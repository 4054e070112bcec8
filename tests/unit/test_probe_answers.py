"""The agent's side of reconciliation's probes (compute_agent/service.py), on the fake
hypervisor and the in-process bus: the answer echoes the probe and tells which servers the
hypervisor has, and the agent's unsolicited reports present themselves as hints."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from compute_agent.service import AgentService
from compute_agent.virt.fake import FakeDriver
from shared.messages import (
    FlavorSpec,
    ImageSpec,
    InstanceSpec,
    Message,
    PowerStateReport,
    ProbeReport,
    ProbeServers,
    ServerPower,
    encode,
    parse,
)
from shared.states import PowerState
from tests.support.agents import reporting_agent

HOST = "probed-host"


@pytest.fixture
async def agent() -> AsyncIterator[tuple[AgentService, FakeDriver, list[Message]]]:
    async with reporting_agent(HOST) as the_agent:
        yield the_agent


async def _server(driver: FakeDriver) -> uuid.UUID:
    instance = InstanceSpec(
        server_id=uuid.uuid4(),
        name="web",
        flavor=FlavorSpec(id="1", name="m1.tiny", vcpus=1, ram_mb=512, disk_gb=1),
        image=ImageSpec(id=uuid.uuid4(), name="cirros"),
    )
    await driver.spawn(instance, "pw")
    return instance.server_id


async def _settle(reports: list[Message], count: int) -> None:
    for _ in range(100):
        if len(reports) >= count:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # and nothing more comes


async def test_the_answer_echoes_the_probe_and_tells_which_servers_are_there(
    agent: tuple[AgentService, FakeDriver, list[Message]],
) -> None:
    the_agent, driver, reports = agent
    running, paused, gone = await _server(driver), await _server(driver), uuid.uuid4()
    await driver.pause(f"instance-{paused}")
    probe_at = datetime(2030, 1, 1, tzinfo=UTC)  # PostgreSQL's, whatever the host's clock
    probe = ProbeServers(
        request_id="req-probe",
        host=HOST,
        servers=[running, paused, gone],
        probe_at=probe_at,
        cause="periodic_check",
    )
    await the_agent.handle(parse(encode(probe)))
    await _settle(reports, 1)
    (answer,) = reports
    assert isinstance(answer, ProbeReport)
    assert (answer.host, answer.request_id, answer.probe_at, answer.cause) == (
        HOST,
        "req-probe",
        probe_at,
        "periodic_check",
    )
    assert answer.servers == [running, paused, gone]
    assert answer.found == [
        ServerPower(server_id=running, power_state=int(PowerState.RUNNING)),
        ServerPower(server_id=paused, power_state=int(PowerState.PAUSED)),
    ]


async def test_a_probe_for_another_host_is_not_answered(
    agent: tuple[AgentService, FakeDriver, list[Message]],
) -> None:
    the_agent, driver, reports = agent
    server_id = await _server(driver)
    await the_agent.handle(
        ProbeServers(
            host="elsewhere",
            servers=[server_id],
            probe_at=datetime.now(UTC),
            cause="agent_started",
        )
    )
    await _settle(reports, 1)
    assert reports == []


async def test_unsolicited_reports_are_hints_stamped_by_the_agents_clock(
    agent: tuple[AgentService, FakeDriver, list[Message]],
) -> None:
    the_agent, driver, reports = agent
    await _server(driver)
    ahead = datetime.now(UTC) + timedelta(minutes=7)
    the_agent.clock = the_agent.power_states.clock = lambda: ahead
    await the_agent.power_states.report_all()
    await the_agent.report_inventory()
    await _settle(reports, 2)
    report, inventory = reports
    assert isinstance(report, PowerStateReport)
    assert report.observed_at == ahead
    assert inventory.type == "host_inventory"
