"""An agent on a fake hypervisor and an in-process bus, with every report it sends collected:
for unit tests of what an agent says, without a conductor to hear it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from compute_agent.service import AgentService
from compute_agent.virt.fake import FakeDriver
from shared import bus as bus_mod
from shared.bus.memory import MemoryBus
from shared.messages import Message


@asynccontextmanager
async def reporting_agent(
    host: str,
) -> AsyncIterator[tuple[AgentService, FakeDriver, list[Message]]]:
    """The agent of ``host`` (not started), its driver, and the reports it has sent so far."""
    bus = MemoryBus()
    reports: list[Message] = []

    async def collect(message: Message) -> None:
        reports.append(message)

    subscription = await bus.consume(bus_mod.REPORTS, collect)
    driver = FakeDriver()
    await driver.init_host(host)
    try:
        yield AgentService(host, bus, driver, power_sync_interval_s=0), driver, reports
    finally:
        await subscription.cancel()
        await driver.close()
        await bus.close()
