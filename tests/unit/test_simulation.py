"""``stratus agent --simulate N``: N hosts in one process, each a real agent of its own."""

from __future__ import annotations

import asyncio
import time
import uuid

from compute_agent.simulation import AgentOptions, Simulation, host_names
from compute_agent.virt.driver import ComputeDriver
from compute_agent.virt.fake import FakeDriver
from shared import bus as bus_mod
from shared.bus import Bus
from shared.bus.memory import MemoryBus
from shared.config import Settings
from shared.messages import Heartbeat, Message, PurgeServers
from stratus import cli, simulate


def test_simulated_hosts_are_numbered_so_that_they_sort_in_order() -> None:
    assert host_names("sim", 3) == ["sim-0001", "sim-0002", "sim-0003"]
    names = host_names("big", 12_000)
    assert names[0] == "big-00001" and names[-1] == "big-12000"
    assert names == sorted(names)


def test_the_agent_options_become_settings() -> None:
    options = "--simulate 1000 --simulate-prefix rack --vcpus 2 --ram-mb 1024 --disk-gb 2"
    args = cli._parser().parse_args(["agent", *options.split()])
    settings = Settings(**simulate.overrides(args))
    assert (settings.simulate_agents, settings.simulate_prefix) == (1000, "rack")
    assert (settings.host_vcpus, settings.host_ram_mb, settings.host_disk_gb) == (2, 1024, 2)
    assert simulate.overrides(cli._parser().parse_args(["conductor"])) == {}


class _Beats:
    """Every heartbeat heard on the bus: host -> the moments it beat."""

    def __init__(self) -> None:
        self.at: dict[str, list[float]] = {}

    async def __call__(self, message: Message) -> None:
        assert isinstance(message, Heartbeat)
        self.at.setdefault(message.host, []).append(time.monotonic())


async def _simulation(
    count: int, bus: MemoryBus, *, per_connection: int, interval_s: float
) -> tuple[Simulation, list[FakeDriver]]:
    drivers: list[FakeDriver] = []

    def new_driver() -> ComputeDriver:
        drivers.append(FakeDriver(vcpus=2, ram_mb=1024, disk_gb=2))
        return drivers[-1]

    def new_bus() -> Bus:
        return bus

    simulation = Simulation(
        host_names("sim", count),
        new_bus,
        new_driver,
        AgentOptions(heartbeat_interval_s=interval_s, power_sync_interval_s=0),
        per_connection=per_connection,
        start_concurrency=4,
    )
    return simulation, drivers


async def test_every_simulated_host_heartbeats_and_has_a_queue_and_hypervisor_of_its_own() -> None:
    bus = MemoryBus()
    beats = _Beats()
    await bus.consume(bus_mod.HEARTBEATS, beats)
    simulation, drivers = await _simulation(20, bus, per_connection=8, interval_s=60)
    progress: list[int] = []
    await simulation.start(lambda started, total, _: progress.append(started))
    try:
        assert len(simulation.buses) == 3  # 8 + 8 + 4 agents
        assert progress == list(range(1, 21))
        await asyncio.sleep(0.05)
        assert sorted(beats.at) == host_names("sim", 20)
        assert len({id(d) for d in drivers}) == 20
        capacity = await drivers[0].capacity()
        assert (capacity.vcpus, capacity.ram_mb, capacity.disk_gb) == (2, 1024, 2)
        for host in simulation.hosts:  # refused if the host's queue were not there
            await bus.publish(bus_mod.compute_queue(host), PurgeServers(host=host, servers=[]))
    finally:
        await simulation.stop()
    assert simulation.agents == [] and simulation.buses == []


async def test_hosts_started_together_drift_apart_but_never_beat_late() -> None:
    bus = MemoryBus()
    beats = _Beats()
    await bus.consume(bus_mod.HEARTBEATS, beats)
    simulation, _ = await _simulation(30, bus, per_connection=100, interval_s=0.6)
    await simulation.start()
    try:
        await asyncio.sleep(0.75)  # each has beaten at its start and once more
    finally:
        await simulation.stop()
    gaps = [at[1] - at[0] for at in beats.at.values() if len(at) > 1]
    assert len(gaps) == 30
    assert max(gaps) <= 0.6 + 0.05  # within the interval (and a little scheduling)
    # jittered: 30 gaps drawn from [0.45, 0.6] s all within 0.05 s of each other would be a
    # chance of about 30 * (1/3)**29
    assert max(gaps) - min(gaps) > 0.05


async def test_a_failed_start_stops_the_agents_already_started() -> None:
    bus = MemoryBus()
    simulation, drivers = await _simulation(6, bus, per_connection=100, interval_s=60)
    broken = uuid.uuid4().hex

    def new_driver() -> ComputeDriver:
        if len(drivers) == 4:
            return _BrokenDriver(broken)
        drivers.append(FakeDriver())
        return drivers[-1]

    simulation.new_driver = new_driver
    try:
        await simulation.start()
    except BaseException as exc:  # the TaskGroup's ExceptionGroup
        assert broken in repr(exc)
    else:
        raise AssertionError("the start should have failed")
    assert simulation.agents == [] and simulation.buses == []
    assert all(d._host is None for d in drivers)  # every hypervisor closed


class _BrokenDriver(FakeDriver):
    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message

    async def init_host(self, host: str) -> None:
        raise RuntimeError(self.message)
