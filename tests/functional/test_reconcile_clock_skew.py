"""Reconciliation holds whatever a host's clock says (conductor/reconcile.py).

An agent stamps what it reports with its own clock, and that clock may be minutes off
PostgreSQL's, which stamps every change of a server. Each test gives the agent of a one-host
fake system a clock two minutes ahead or two minutes behind, and checks the three decisions
that once compared the two clocks: a server the host lacks goes to ERROR, one it has (even
one that reached ACTIVE after the host looked) does not, and the guest's power is followed,
never undone by an observation older than a change.

Reports are taken from the agent itself; to deliver one late, as a busy queue would, the test
keeps what the agent publishes (``held_back``) and publishes it later. ``Traffic`` tells when
the system has handled everything in flight, probes and their answers included, so nothing
here waits for a fixed time.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import REGISTRY

from compute_agent.service import AgentService
from compute_agent.virt.fake import FakeDriver
from shared import bus as bus_mod
from shared.bus import Bus
from shared.messages import Message, PowerStateReport, ProbeReport
from shared.states import PowerState
from tests.conftest import IMAGE
from tests.support.actions import act, active_server, server_row
from tests.support.client import ComputeClient
from tests.support.cluster import Cluster, fake_cluster

HOST = "skewed"


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    # no periodic report nor reaper: each test sends the reports it means
    async with fake_cluster(
        tmp_path, (HOST,), reaper_interval_s=0, power_sync_interval_s=0
    ) as the_cluster:
        yield the_cluster


@pytest.fixture
async def api(cluster: Cluster) -> AsyncIterator[ComputeClient]:
    async with aiohttp.ClientSession() as session:
        yield ComputeClient(session, cluster.system.url, "skew", "alice")


@pytest.fixture(
    params=[timedelta(minutes=2), -timedelta(minutes=2)], ids=["2-min-ahead", "2-min-behind"]
)
def agent(cluster: Cluster, request: pytest.FixtureRequest) -> AgentService:
    """The system's one agent, its clock off PostgreSQL's (and this process's) by the
    parameter."""
    (the_agent,) = cluster.system.agents
    offset: timedelta = request.param
    the_agent.clock = the_agent.power_states.clock = skewed_clock(offset)
    return the_agent


def skewed_clock(offset: timedelta) -> Callable[[], datetime]:
    def clock() -> datetime:
        return datetime.now(UTC) + offset

    return clock


def driver_of(cluster: Cluster) -> FakeDriver:
    return cluster.drivers[HOST]


class _Keeper:
    """Takes what an agent publishes instead of the broker, to be delivered later."""

    def __init__(self) -> None:
        self.kept: list[tuple[str, Message]] = []

    async def publish(self, routing_key: str, message: Message) -> None:
        self.kept.append((routing_key, message))


@contextmanager
def held_back(agent: AgentService) -> Iterator[_Keeper]:
    """While in the block, what ``agent`` publishes (its reports) is kept, not sent."""
    keeper = _Keeper()
    bus, watch_bus = agent.bus, agent.power_states.bus
    agent.bus = agent.power_states.bus = keeper  # type: ignore[assignment]
    try:
        yield keeper
    finally:
        agent.bus, agent.power_states.bus = bus, watch_bus


async def deliver(cluster: Cluster, keeper: _Keeper) -> None:
    bus: Bus | None = cluster.system.bus
    assert bus is not None
    for routing_key, message in keeper.kept:
        await bus.publish(routing_key, message)


class Traffic:
    """The messages of the types that reconcile, published and handled by this process since
    it was made (the bus counts them, shared/metrics.py): when the counts agree, everything
    sent, probes and answers included, has been handled (a handler publishes what it causes
    before it returns). Made while none is in flight."""

    TYPES = ("host_inventory", "power_state_report", "probe_servers", "probe_report")

    def __init__(self) -> None:
        self.start = {t: self._counts(t) for t in self.TYPES}

    @staticmethod
    def _counts(message_type: str) -> tuple[float, float]:
        def count(what: str) -> float:
            value = REGISTRY.get_sample_value(
                f"stratus_bus_messages_{what}_total", {"type": message_type}
            )
            return value or 0.0

        return count("published"), count("consumed")

    def _in_flight(self) -> list[str]:
        busy = []
        for message_type, (published_before, consumed_before) in self.start.items():
            published, consumed = self._counts(message_type)
            if published - published_before != consumed - consumed_before:
                busy.append(message_type)
        return busy

    async def settled(self, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while busy := self._in_flight():
            if time.monotonic() > deadline:
                raise AssertionError(f"still in flight: {busy}")
            await asyncio.sleep(0.02)


async def status(api: ComputeClient, server_id: str) -> tuple[str, str]:
    server = (await api.get(f"/servers/{server_id}")).body["server"]
    return server["status"], server.get("fault", {}).get("message", "")


async def wait_for_task(cluster: Cluster, server_id: str, task: str) -> None:
    for _ in range(250):
        if (await server_row(cluster.pool, server_id))["task_state"] == task:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"server {server_id} never reached task {task}")


async def test_servers_the_host_has_stay_active_even_one_newer_than_its_look(
    cluster: Cluster, api: ComputeClient, agent: AgentService
) -> None:
    settled = [await active_server(api, f"settled-{n}", IMAGE) for n in range(2)]
    release = driver_of(cluster).hold("spawn")
    late = (await api.create_server("late", IMAGE)).body["server"]["id"]
    await wait_for_task(cluster, late, "spawning")
    # the host looks (its inventory as when its agent starts, and its report of every
    # server) while the late server is still being built: neither names it
    with held_back(agent) as keeper:
        await agent.report_inventory()
        await agent.power_states.report_all()
    kept = [type(message).__name__ for _, message in keeper.kept]
    assert kept == ["HostInventory", "PowerStateReport"]
    release.set()
    await api.wait_for_status(late, "ACTIVE")
    # the reports arrive only now, when the late server is ACTIVE: they are older than it,
    # whatever the agent's clock says
    traffic = Traffic()
    await deliver(cluster, keeper)
    await traffic.settled()

    for server_id in [*settled, late]:
        assert await status(api, server_id) == ("ACTIVE", ""), server_id


async def test_a_server_whose_domain_vanished_goes_to_error(
    cluster: Cluster, api: ComputeClient, agent: AgentService
) -> None:
    kept = await active_server(api, "kept", IMAGE)
    lost_away, lost_running = [await active_server(api, f"lost-{n}", IMAGE) for n in range(2)]
    driver_of(cluster).domains.pop(f"instance-{lost_away}")  # while its agent was away
    traffic = Traffic()
    await agent.report_inventory()  # as when it starts
    await traffic.settled()
    assert await status(api, lost_away) == (
        "ERROR",
        f"host {HOST} has no domain for this server (found when its agent started)",
    )

    driver_of(cluster).domains.pop(f"instance-{lost_running}")  # behind the running agent's back
    await agent.power_states.report_all()
    await traffic.settled()
    assert await status(api, lost_running) == (
        "ERROR",
        f"host {HOST} has no domain for this server (found missing by a periodic check)",
    )
    assert await status(api, kept) == ("ACTIVE", "")


async def test_the_power_a_skewed_host_sees_is_followed(
    cluster: Cluster, api: ComputeClient, agent: AgentService
) -> None:
    server_id = await active_server(api, "on-its-own", IMAGE)
    domain = f"instance-{server_id}"
    traffic = Traffic()
    # the guest shuts itself down, and starts again: the agent hears it from its hypervisor
    driver_of(cluster).guest_power(domain, PowerState.SHUTDOWN)
    await api.wait_for_status(server_id, "SHUTOFF", timeout_s=10)
    await traffic.settled()
    driver_of(cluster).guest_power(domain, PowerState.RUNNING)
    await api.wait_for_status(server_id, "ACTIVE", timeout_s=10)
    await traffic.settled()
    # the database lost track (it believes the guest stopped): the periodic report tells
    await cluster.pool.execute(
        "UPDATE servers SET vm_state = 'stopped', power_state = 4 WHERE id = $1",
        uuid.UUID(server_id),
    )
    await agent.power_states.report_all()
    await traffic.settled()
    assert await status(api, server_id) == ("ACTIVE", "")


async def test_an_observation_older_than_a_change_does_not_undo_it(
    cluster: Cluster, api: ComputeClient, agent: AgentService
) -> None:
    server_id = await active_server(api, "stopped-then-started", IMAGE)
    assert (await act(api, server_id, {"os-stop": None})).status == 202
    await api.wait_for_status(server_id, "SHUTOFF")
    with held_back(agent) as keeper:  # the host sees it stopped; its report is late
        await agent.power_states.report_all()
    assert (await act(api, server_id, {"os-start": None})).status == 202
    await api.wait_for_status(server_id, "ACTIVE")
    traffic = Traffic()
    await deliver(cluster, keeper)
    await traffic.settled()
    assert await status(api, server_id) == ("ACTIVE", "")


async def test_a_probe_answered_twice_or_late_judges_once_and_only_what_it_may(
    cluster: Cluster, api: ComputeClient
) -> None:
    """The bus delivers at least once: a second answer changes nothing. An answer to a
    probe sent before the server's last change judges nothing (the host may have looked
    before that change)."""
    lost = await active_server(api, "lost", IMAGE)
    driver_of(cluster).domains.pop(f"instance-{lost}")
    probe_at: datetime = await cluster.pool.fetchval("SELECT clock_timestamp()")
    answer = ProbeReport(
        host=HOST, servers=[uuid.UUID(lost)], probe_at=probe_at, cause="periodic_check", found=[]
    )
    early = answer.model_copy(update={"probe_at": probe_at - timedelta(minutes=1)})
    bus = cluster.system.bus
    assert bus is not None
    traffic = Traffic()
    await bus.publish(bus_mod.REPORTS, early)
    await traffic.settled()
    assert (await status(api, lost))[0] == "ACTIVE"

    for _ in range(2):
        await bus.publish(bus_mod.REPORTS, answer)
    await traffic.settled()
    assert (await status(api, lost))[0] == "ERROR"
    faults = await cluster.pool.fetchval(
        "SELECT count(*) FROM server_faults WHERE server_id = $1", uuid.UUID(lost)
    )
    assert faults == 1


async def test_a_report_dated_an_hour_ahead_puts_nothing_in_error_by_its_clock(
    cluster: Cluster, api: ComputeClient
) -> None:
    """A report of every server (hand-made, as a report of the version before probes), its
    clock an hour ahead, lacking a server the host has: the server is probed, not judged by
    that clock."""
    server_id = await active_server(api, "present", IMAGE)
    bus = cluster.system.bus
    assert bus is not None
    traffic = Traffic()
    await bus.publish(
        bus_mod.REPORTS,
        PowerStateReport(host=HOST, observed_at=datetime.now(UTC) + timedelta(hours=1), servers=[]),
    )
    await traffic.settled()
    assert await status(api, server_id) == ("ACTIVE", "")
