"""os-stop and os-start (nova's os-server-start-stop), gateway to agent and back: the owner's
actions, refused on a locked server, each with its task while the host works."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import IMAGE
from tests.support.actions import act, actions_of, active_server, wait_until_action_done
from tests.support.client import ComputeClient
from tests.support.cluster import Cluster, fake_cluster


async def _states(api: ComputeClient, server_id: str) -> tuple[str, str, str | None, int]:
    server = (await api.get(f"/servers/{server_id}")).body["server"]
    return (
        server["status"],
        server["OS-EXT-STS:vm_state"],
        server["OS-EXT-STS:task_state"],
        server["OS-EXT-STS:power_state"],
    )


async def test_the_owner_stops_and_starts_a_server(api: ComputeClient) -> None:
    server_id = await active_server(api, "stop-start", IMAGE)
    assert (await act(api, server_id, {"os-stop": None})).status == 202
    await api.wait_for_status(server_id, "SHUTOFF")
    assert await _states(api, server_id) == ("SHUTOFF", "stopped", None, 4)
    assert (await act(api, server_id, {"os-stop": None})).status == 409
    assert (await act(api, server_id, {"os-start": None})).status == 202
    await api.wait_for_status(server_id, "ACTIVE")
    assert await _states(api, server_id) == ("ACTIVE", "active", None, 1)
    assert (await act(api, server_id, {"os-start": None})).status == 409
    await api.delete_and_wait(server_id)


async def test_a_stopped_server_can_be_deleted(api: ComputeClient) -> None:
    server_id = await active_server(api, "stopped-then-gone", IMAGE)
    assert (await act(api, server_id, {"os-stop": None})).status == 202
    await api.wait_for_status(server_id, "SHUTOFF")
    await api.delete_and_wait(server_id)


async def test_a_locked_server_refuses_stop_to_its_owner_but_not_to_an_administrator(
    client_for: Callable[[str, str], ComputeClient], tenant: str
) -> None:
    member, admin = client_for(tenant, "alice"), client_for(tenant, "admin")
    server_id = await active_server(member, "locked", IMAGE)
    assert (await act(admin, server_id, {"lock": None})).status == 202
    reply = await act(member, server_id, {"os-stop": None})
    assert (reply.status, next(iter(reply.body))) == (409, "conflictingRequest")
    assert (await act(admin, server_id, {"os-stop": None})).status == 202
    await admin.wait_for_status(server_id, "SHUTOFF")
    assert (await act(member, server_id, {"os-start": None})).status == 409
    assert (await act(admin, server_id, {"unlock": None})).status == 202
    assert (await act(member, server_id, {"os-start": None})).status == 202
    await member.wait_for_status(server_id, "ACTIVE")
    await member.delete_and_wait(server_id)


async def test_another_project_cannot_stop_a_server(
    client_for: Callable[[str, str], ComputeClient], tenant: str
) -> None:
    owner = client_for(tenant, "alice")
    server_id = await active_server(owner, "mine", IMAGE)
    stranger = client_for(f"{tenant}-other", "bob")
    assert (await act(stranger, server_id, {"os-stop": None})).status == 404
    assert (await act(owner, str(uuid.uuid4()), {"os-stop": None})).status == 404
    await owner.delete_and_wait(server_id)


async def test_the_extension_is_listed(api: ComputeClient) -> None:
    reply = await api.get("/extensions/os-server-start-stop")
    assert (reply.status, reply.body["extension"]["name"]) == (200, "ServerStartStop")


# --- on hosts of the fake hypervisor: watching the host at work, making it fail -------------


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    tmp: Path = tmp_path_factory.mktemp("start-stop-cluster")
    async with fake_cluster(tmp, ("one",)) as the_cluster:
        yield the_cluster


@pytest.fixture
def owner(cluster: Cluster, http: aiohttp.ClientSession, tenant: str) -> ComputeClient:
    return ComputeClient(http, cluster.system.url, tenant, "alice")


async def test_each_shows_its_task_while_the_host_works(
    owner: ComputeClient, cluster: Cluster
) -> None:
    server_id = await active_server(owner, "watched", IMAGE)
    driver = await cluster.driver_of(server_id)
    for action, operation, task, status_after, power in (
        ("os-stop", "power_off", "powering-off", "SHUTOFF", 4),
        ("os-start", "power_on", "powering-on", "ACTIVE", 1),
    ):
        release = driver.hold(operation)
        assert (await act(owner, server_id, {action: None})).status == 202
        assert (await _states(owner, server_id))[2] == task
        assert (await act(owner, server_id, {"reboot": {"type": "HARD"}})).status == 409
        release.set()
        await owner.wait_for_status(server_id, status_after)
        await wait_until_action_done(cluster.pool, server_id)
        assert driver.domains[f"instance-{server_id}"].power == power
    assert [a for a, _ in await actions_of(cluster.pool, server_id)] == [
        "create",
        "os-stop",
        "os-start",
    ]
    await owner.delete_and_wait(server_id)


async def test_a_failed_stop_leaves_the_server_running_with_a_fault(
    owner: ComputeClient, cluster: Cluster
) -> None:
    server_id = await active_server(owner, "stubborn", IMAGE)
    (await cluster.driver_of(server_id)).fail_next("power_off", "the guest would not stop")
    assert (await act(owner, server_id, {"os-stop": None})).status == 202
    await wait_until_action_done(cluster.pool, server_id)
    assert await _states(owner, server_id) == ("ACTIVE", "active", None, 1)
    assert (await actions_of(cluster.pool, server_id))[-1] == ("os-stop", "error")
    fault = await cluster.pool.fetchval(
        "SELECT message FROM server_faults WHERE server_id = $1 ORDER BY id DESC LIMIT 1",
        uuid.UUID(server_id),
    )
    assert fault == "the guest would not stop"
    await owner.delete_and_wait(server_id)


async def test_start_defines_a_server_its_hypervisor_lost(
    owner: ComputeClient, cluster: Cluster
) -> None:
    server_id = await active_server(owner, "forgotten", IMAGE)
    assert (await act(owner, server_id, {"os-stop": None})).status == 202
    await owner.wait_for_status(server_id, "SHUTOFF")
    driver = await cluster.driver_of(server_id)
    del driver.domains[f"instance-{server_id}"]
    assert (await act(owner, server_id, {"os-start": None})).status == 202
    await owner.wait_for_status(server_id, "ACTIVE")
    assert f"instance-{server_id}" in driver.domains
    await owner.delete_and_wait(server_id)
