"""The agent's side of power states (compute_agent/power_states.py), on the fake hypervisor and
the in-process bus: a guest's change is checked once its server's command is over, events
that come meanwhile make one check, and the periodic report tells of every server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from compute_agent.locks import KeyedLocks
from compute_agent.power_states import PowerStateWatch
from compute_agent.virt.fake import FakeDriver
from shared import bus as bus_mod
from shared.bus.memory import MemoryBus
from shared.messages import FlavorSpec, ImageSpec, InstanceSpec, Message, PowerStateReport
from shared.states import PowerState


@pytest.fixture
async def watched() -> AsyncIterator[tuple[FakeDriver, PowerStateWatch, list[PowerStateReport]]]:
    bus = MemoryBus()
    reports: list[PowerStateReport] = []

    async def collect(message: Message) -> None:
        assert isinstance(message, PowerStateReport)
        reports.append(message)

    subscription = await bus.consume(bus_mod.REPORTS, collect)
    driver = FakeDriver()
    await driver.init_host("watched-host")
    watch = PowerStateWatch("watched-host", bus, driver, KeyedLocks(), interval_s=0)
    watch.start()
    yield driver, watch, reports
    await watch.stop()
    await subscription.cancel()
    await driver.close()
    await bus.close()


async def _server(driver: FakeDriver) -> InstanceSpec:
    instance = InstanceSpec(
        server_id=uuid.uuid4(),
        name="web",
        flavor=FlavorSpec(id="1", name="m1.tiny", vcpus=1, ram_mb=512, disk_gb=1),
        image=ImageSpec(id=uuid.uuid4(), name="cirros"),
    )
    await driver.spawn(instance, "pw")
    return instance


async def _settle(reports: list[PowerStateReport], count: int) -> None:
    for _ in range(100):
        if len(reports) >= count:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # and nothing more comes


async def test_changes_during_a_command_are_checked_once_after_it(
    watched: tuple[FakeDriver, PowerStateWatch, list[PowerStateReport]],
) -> None:
    driver, watch, reports = watched
    instance = await _server(driver)
    async with watch.locks.hold(instance.server_id):  # a command for the server runs
        driver.guest_power(instance.domain_name, PowerState.SHUTDOWN)
        driver.guest_power(instance.domain_name, PowerState.CRASHED)
        await asyncio.sleep(0.05)
        assert reports == []  # the check waits for the command
        driver.guest_power(instance.domain_name, PowerState.RUNNING)  # the command's result
    await _settle(reports, 1)
    assert len(reports) == 1
    (report,) = reports
    assert (report.host, report.server_id) == ("watched-host", instance.server_id)
    assert [(s.server_id, s.power_state) for s in report.servers] == [
        (instance.server_id, int(PowerState.RUNNING))  # what is true once it is over
    ]


async def test_the_periodic_report_tells_of_every_server_and_nothing_else(
    watched: tuple[FakeDriver, PowerStateWatch, list[PowerStateReport]],
) -> None:
    driver, watch, reports = watched
    first, second = await _server(driver), await _server(driver)
    await driver.pause(second.domain_name)
    await watch.report_all()
    await _settle(reports, 1)
    assert len(reports) == 1
    assert {(s.server_id, s.power_state) for s in reports[0].servers} == {
        (first.server_id, int(PowerState.RUNNING)),
        (second.server_id, int(PowerState.PAUSED)),
    }


async def test_a_stopped_watch_checks_nothing(
    watched: tuple[FakeDriver, PowerStateWatch, list[PowerStateReport]],
) -> None:
    driver, watch, reports = watched
    instance = await _server(driver)
    await watch.stop()
    driver.guest_power(instance.domain_name, PowerState.SHUTDOWN)
    watch.changed("not-a-server")
    await _settle(reports, 1)
    assert reports == []
