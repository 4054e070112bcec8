"""What a hypervisor says on its own of a server's power, and what that changes.

A guest may stop, crash, be paused or be started without any action of Stratus: the
hypervisor tells its agent (libvirt's lifecycle events), the agent reports the power state,
and the server follows (SHUTOFF, PAUSED, ACTIVE...) when it is on that host, runs no task,
and has not changed since the host looked. An agent's report is a hint: the conductor asks
the host again where it disagrees, and judges by the answer, whose moment it knows on
PostgreSQL's clock (never the agent's). The agent also reports every server now and then,
which catches what no event told.

The first tests run on the shared system (libvirt's test hypervisor, whose domains can be
changed behind Stratus's back); the others on a fake two-host system of their own, whose
guests can be made to change their power while an action runs.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from compute_agent.virt.factory import libvirt_available
from shared import bus as bus_mod
from shared.messages import PowerStateReport, ServerPower
from shared.states import PowerState
from stratus.system import System
from tests.conftest import IMAGE
from tests.support.actions import act, actions_of, active_server, server_row
from tests.support.client import ComputeClient
from tests.support.cluster import Cluster, fake_cluster
from tests.support.missing import LIBVIRT_BINDING

needs_libvirt = pytest.mark.skipif(not libvirt_available(), reason=LIBVIRT_BINDING)


@pytest.fixture
def hypervisor() -> Iterator[Any]:
    """libvirt's test hypervisor, as the shared system's agent sees it (one per process)."""
    import libvirt

    conn = libvirt.open("test:///default")
    yield conn
    conn.close()


async def _power(api: ComputeClient, server_id: str) -> tuple[str, str, int]:
    server = (await api.get(f"/servers/{server_id}")).body["server"]
    return server["status"], server["OS-EXT-STS:vm_state"], server["OS-EXT-STS:power_state"]


async def _becomes(
    api: ComputeClient, server_id: str, expected: tuple[str, str, int], timeout_s: float = 10
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while (seen := await _power(api, server_id)) != expected:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"server {server_id} is {seen}, never {expected}")
        await asyncio.sleep(0.05)


# --- the shared system, on libvirt's test hypervisor ----------------------------------------


@needs_libvirt
async def test_a_guest_stopped_started_or_paused_behind_stratus_back_shows_it(
    api: ComputeClient, hypervisor: Any, system: System
) -> None:
    server_id = await active_server(api, "on-its-own", IMAGE)
    domain = hypervisor.lookupByName(f"instance-{server_id}")
    domain.destroy()  # the guest powered itself off (or crashed)
    await _becomes(api, server_id, ("SHUTOFF", "stopped", int(PowerState.SHUTDOWN)))
    domain.create()  # somebody started it
    await _becomes(api, server_id, ("ACTIVE", "active", int(PowerState.RUNNING)))
    domain.suspend()  # its hypervisor paused it (an I/O error...)
    await _becomes(api, server_id, ("PAUSED", "paused", int(PowerState.PAUSED)))
    domain.resume()
    await _becomes(api, server_id, ("ACTIVE", "active", int(PowerState.RUNNING)))
    assert [a for a, _ in await actions_of(system.pool, server_id)] == ["create"]
    await api.delete_and_wait(server_id)


@needs_libvirt
async def test_the_periodic_report_catches_what_no_event_told(
    api: ComputeClient, system: System
) -> None:
    assert system.pool is not None
    server_id = await active_server(api, "missed", IMAGE)
    await system.pool.execute(  # the database lost track: it believes the guest stopped
        "UPDATE servers SET vm_state = 'stopped', power_state = 4 WHERE id = $1",
        uuid.UUID(server_id),
    )
    await _becomes(api, server_id, ("SHUTOFF", "stopped", int(PowerState.SHUTDOWN)))
    await system.agents[0].power_states.report_all()
    await _becomes(api, server_id, ("ACTIVE", "active", int(PowerState.RUNNING)))
    await api.delete_and_wait(server_id)


# --- a fake two-host system ------------------------------------------------------------------

HOSTS = ("power-a", "power-b")


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    tmp: Path = tmp_path_factory.mktemp("power-states")
    async with fake_cluster(tmp, HOSTS) as the_cluster:
        yield the_cluster


@pytest.fixture
def user(cluster: Cluster, http: aiohttp.ClientSession, tenant: str) -> ComputeClient:
    return ComputeClient(http, cluster.system.url, tenant, "alice")


async def _report(
    cluster: Cluster, server_id: str, host: str, power: PowerState, observed_at: datetime
) -> None:
    """Publish what a host's agent would say of the server (a hint), and let the conductor
    act on it."""
    bus = cluster.system.bus
    assert bus is not None
    await bus.publish(
        bus_mod.REPORTS,
        PowerStateReport(
            host=host,
            observed_at=observed_at,
            servers=[ServerPower(server_id=uuid.UUID(server_id), power_state=int(power))],
        ),
    )
    await asyncio.sleep(0.3)


async def test_a_guest_that_shut_itself_down_is_shutoff_until_rebooted(
    user: ComputeClient, cluster: Cluster
) -> None:
    server_id = await active_server(user, "shuts-down", IMAGE)
    driver = await cluster.driver_of(server_id)
    driver.guest_power(f"instance-{server_id}", PowerState.SHUTDOWN)
    await _becomes(user, server_id, ("SHUTOFF", "stopped", int(PowerState.SHUTDOWN)))
    assert (await act(user, server_id, {"pause": None})).status == 409
    assert (await act(user, server_id, {"reboot": {"type": "SOFT"}})).status == 202
    await _becomes(user, server_id, ("ACTIVE", "active", int(PowerState.RUNNING)))
    driver.guest_power(f"instance-{server_id}", PowerState.CRASHED)
    await _becomes(user, server_id, ("SHUTOFF", "stopped", int(PowerState.CRASHED)))
    await user.delete_and_wait(server_id)


async def test_a_power_change_never_overtakes_a_running_action(
    user: ComputeClient, cluster: Cluster
) -> None:
    """The guest stops while a hard reboot is under way: the action's outcome stands."""
    server_id = await active_server(user, "busy", IMAGE)
    driver = await cluster.driver_of(server_id)
    release = driver.hold("reboot")
    assert (await act(user, server_id, {"reboot": {"type": "HARD"}})).status == 202
    await _becomes(user, server_id, ("HARD_REBOOT", "active", int(PowerState.RUNNING)))
    driver.guest_power(f"instance-{server_id}", PowerState.SHUTDOWN)
    host = await cluster.host_of(server_id)
    await _report(cluster, server_id, host, PowerState.SHUTDOWN, datetime.now(UTC))
    assert await _power(user, server_id) == ("HARD_REBOOT", "active", int(PowerState.RUNNING))
    release.set()
    await _becomes(user, server_id, ("ACTIVE", "active", int(PowerState.RUNNING)))
    await asyncio.sleep(0.3)  # the check the guest's stop caused has reported since
    assert await _power(user, server_id) == ("ACTIVE", "active", int(PowerState.RUNNING))
    await user.delete_and_wait(server_id)


async def test_only_the_servers_host_and_a_fresh_observation_count(
    user: ComputeClient, cluster: Cluster
) -> None:
    server_id = await active_server(user, "watched", IMAGE)
    host = await cluster.host_of(server_id)
    other = next(h for h in HOSTS if h != host)
    updated = (await server_row(cluster.pool, server_id))["updated_at"]
    running = ("ACTIVE", "active", int(PowerState.RUNNING))

    await _report(cluster, server_id, other, PowerState.SHUTDOWN, datetime.now(UTC))
    assert await _power(user, server_id) == running  # another host cannot speak for it
    before = updated - timedelta(seconds=1)
    await _report(cluster, server_id, host, PowerState.SHUTDOWN, before)
    assert await _power(user, server_id) == running  # stale: the host, asked again, says so
    await _report(cluster, server_id, host, PowerState.SHUTDOWN, datetime.now(UTC))
    assert await _power(user, server_id) == running  # a claim the hypervisor does not back
    await _report(cluster, server_id, host, PowerState.RUNNING, datetime.now(UTC))
    assert (await server_row(cluster.pool, server_id))["updated_at"] == updated  # nothing new
    driver = await cluster.driver_of(server_id)
    driver.guest_power(f"instance-{server_id}", PowerState.PAUSED)  # a fresh observation
    await _becomes(user, server_id, ("PAUSED", "paused", int(PowerState.PAUSED)))
    await user.delete_and_wait(server_id)
    await _report(cluster, server_id, host, PowerState.RUNNING, datetime.now(UTC))  # gone: ignored


async def test_a_password_the_guest_cannot_take_leaves_the_server_as_it_was(
    user: ComputeClient, cluster: Cluster
) -> None:
    server_id = await active_server(user, "no-agent", IMAGE)
    driver = await cluster.driver_of(server_id)
    reason = "cannot set the password of root: no guest agent answers in the guest"
    driver.fail_next("set_admin_password", reason)
    assert (await act(user, server_id, {"changePassword": {"adminPass": "x"}})).status == 202
    await asyncio.sleep(0.3)
    for _ in range(100):
        if (await actions_of(cluster.pool, server_id))[-1] != ("changePassword", "pending"):
            break
        await asyncio.sleep(0.05)
    assert await _power(user, server_id) == ("ACTIVE", "active", int(PowerState.RUNNING))
    assert (await actions_of(cluster.pool, server_id))[-1] == ("changePassword", "error")
    fault = await cluster.pool.fetchval(
        "SELECT message FROM server_faults WHERE server_id = $1 ORDER BY id DESC LIMIT 1",
        uuid.UUID(server_id),
    )
    assert fault == reason
    assert (await act(user, server_id, {"changePassword": {"adminPass": "y"}})).status == 202
    await user.delete_and_wait(server_id)
