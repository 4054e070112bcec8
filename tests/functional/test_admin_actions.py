"""The admin actions of chapter 3, carried through gateway, conductor and agent (guide 3.1).

The first part runs on the shared system (one host; libvirt's test hypervisor when the
binding is installed), sending the guide's own sample bodies (Ex 3.1–3.23). The second part
runs on a cluster of two fake hosts of its own, to watch a host at work, make it fail, move
servers between hosts and rescue a server stuck in a task. Requests come from an
administrator unless the test is about what a member may do (test_policy_and_locking.py).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from api_gateway.image_purge import purge_deleted_image_data
from compute_agent.virt.factory import libvirt_available
from shared.image_data.filesystem import DirectoryImageData
from stratus.system import System
from tests.conformance.support import SAMPLES
from tests.conftest import IMAGE
from tests.support.actions import (
    FLAVORS,
    act,
    actions_of,
    active_server,
    migrations_of,
    wait_for_image,
    wait_until_action_done,
)
from tests.support.client import ComputeClient, Reply
from tests.support.cluster import Cluster, fake_cluster
from tests.support.missing import LIBVIRT_BINDING

IDLE = (0, 0, 0)


@pytest.fixture
def admin(client_for: Callable[[str, str], ComputeClient], tenant: str) -> ComputeClient:
    """An administrator acting in the test's project."""
    return client_for(tenant, "admin")


async def send_sample(client: ComputeClient, server_id: str, sample: str) -> Reply:
    """POST a sample body of the guide as it is printed, JSON or XML by its file name."""
    content_type = "application/xml" if sample.endswith(".xml") else "application/json"
    return await client.request(
        "POST",
        f"/servers/{server_id}/action",
        headers={"Content-Type": content_type},
        data=(SAMPLES / sample).read_bytes(),
    )


async def extended(client: ComputeClient, server_id: str) -> tuple[str, str, str | None, int]:
    """(status, vm_state, task_state, power_state) as the server shows them."""
    server = (await client.get(f"/servers/{server_id}")).body["server"]
    return (
        server["status"],
        server["OS-EXT-STS:vm_state"],
        server["OS-EXT-STS:task_state"],
        server["OS-EXT-STS:power_state"],
    )


async def wait_for_task(
    client: ComputeClient, server_id: str, task: str, timeout_s: float = 10.0
) -> str:
    """Poll until the server runs ``task`` (OS-EXT-STS:task_state); its status then."""
    for _ in range(int(timeout_s / 0.05)):
        status, _, task_state, _ = await extended(client, server_id)
        if task_state == task:
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"server {server_id} never ran {task}")


@pytest.fixture
def hypervisor() -> Iterator[Any]:
    """libvirt's test hypervisor as the shared system's host sees it (one per process)."""
    if not libvirt_available():
        pytest.skip(LIBVIRT_BINDING)
    import libvirt

    conn = libvirt.open("test:///default")
    yield conn
    conn.close()


# --- pause, unpause, suspend, resume ----------------------------------------------------------


async def test_pause_and_unpause_with_the_samples_in_json_and_xml(
    admin: ComputeClient, system: System
) -> None:
    server_id = await active_server(admin, "pausable", IMAGE)
    reply = await send_sample(admin, server_id, "3.1-pause-server-request.json")
    assert (reply.status, reply.body) == (202, "")
    await admin.wait_for_status(server_id, "PAUSED")
    await wait_until_action_done(system.pool, server_id)
    assert await extended(admin, server_id) == ("PAUSED", "paused", None, 3)

    assert (await send_sample(admin, server_id, "3.4-unpause-server-request.xml")).status == 202
    await admin.wait_for_status(server_id, "ACTIVE")
    await wait_until_action_done(system.pool, server_id)
    assert await extended(admin, server_id) == ("ACTIVE", "active", None, 1)
    assert await actions_of(system.pool, server_id) == [
        ("create", "success"),
        ("pause", "success"),
        ("unpause", "success"),
    ]
    await admin.delete_and_wait(server_id)


async def test_suspend_and_resume_with_the_samples_in_xml_and_json(
    admin: ComputeClient, system: System
) -> None:
    server_id = await active_server(admin, "suspendable", IMAGE)
    assert (await send_sample(admin, server_id, "3.6-suspend-server-request.xml")).status == 202
    await admin.wait_for_status(server_id, "SUSPENDED")
    await wait_until_action_done(system.pool, server_id)
    assert await extended(admin, server_id) == ("SUSPENDED", "suspended", None, 7)

    assert (await send_sample(admin, server_id, "3.7-resume-server-request.json")).status == 202
    await admin.wait_for_status(server_id, "ACTIVE")
    await wait_until_action_done(system.pool, server_id)
    assert await extended(admin, server_id) == ("ACTIVE", "active", None, 1)
    await admin.delete_and_wait(server_id)


async def test_the_hypervisor_pauses_and_saves_the_domain(
    admin: ComputeClient, system: System, hypervisor: Any
) -> None:
    import libvirt

    server_id = await active_server(admin, "domain", IMAGE)
    domain = hypervisor.lookupByName(f"instance-{server_id}")
    assert (await send_sample(admin, server_id, "3.2-pause-server-request.xml")).status == 202
    await admin.wait_for_status(server_id, "PAUSED")
    assert domain.state()[0] == libvirt.VIR_DOMAIN_PAUSED
    assert (await send_sample(admin, server_id, "3.3-unpause-server-request.json")).status == 202
    await admin.wait_for_status(server_id, "ACTIVE")
    assert (await send_sample(admin, server_id, "3.5-suspend-server-request.json")).status == 202
    await admin.wait_for_status(server_id, "SUSPENDED")
    assert not domain.isActive() and domain.hasManagedSaveImage(0)
    assert (await send_sample(admin, server_id, "3.8-resume-server-request.xml")).status == 202
    await admin.wait_for_status(server_id, "ACTIVE")
    assert domain.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert not domain.hasManagedSaveImage(0)
    await wait_until_action_done(system.pool, server_id)
    await admin.delete_and_wait(server_id)


async def test_power_actions_from_the_wrong_state_are_409(
    admin: ComputeClient, system: System
) -> None:
    server_id = await active_server(admin, "wrong-state", IMAGE)
    for body in ({"unpause": None}, {"resume": None}):
        refused = await act(admin, server_id, body)
        assert refused.status == 409, refused
        assert "vm_state active" in refused.body["conflictingRequest"]["message"]
    assert (await act(admin, server_id, {"pause": None})).status == 202
    await admin.wait_for_status(server_id, "PAUSED")
    await wait_until_action_done(system.pool, server_id)
    for body in ({"pause": None}, {"suspend": None}, {"resume": None}, {"migrate": None}):
        assert (await act(admin, server_id, body)).status == 409, body
    assert [a for a, _ in await actions_of(system.pool, server_id)] == ["create", "pause"]
    await admin.delete_and_wait(server_id)


async def test_an_unknown_server_is_404_for_every_admin_action(admin: ComputeClient) -> None:
    for body in (
        {"pause": None},
        {"lock": None},
        {"os-resetState": {"state": "error"}},
        {"createBackup": {"name": "b", "backup_type": "daily", "rotation": 1}},
    ):
        reply = await act(admin, str(uuid.uuid4()), body)
        assert reply.status == 404 and "itemNotFound" in reply.body, body


# --- resetNetwork, injectNetworkInfo --------------------------------------------------------------


async def test_network_actions_are_done_by_the_host_and_recorded(
    admin: ComputeClient, system: System
) -> None:
    server_id = await active_server(admin, "networked", IMAGE)
    before = (await admin.get(f"/servers/{server_id}")).body["server"]
    for sample in (
        "3.10-reset-networking-on-server-request.json",
        "3.11-reset-networking-on-server-request.xml",
        "3.12-inject-network-information-request.json",
        "3.13-inject-network-information-request.xml",
    ):
        reply = await send_sample(admin, server_id, sample)
        assert (reply.status, reply.body) == (202, ""), sample
        assert (await extended(admin, server_id))[:3] == ("ACTIVE", "active", None)
        await wait_until_action_done(system.pool, server_id)
    after = (await admin.get(f"/servers/{server_id}")).body["server"]
    assert after["status"] == "ACTIVE" and after["addresses"] == before["addresses"]
    assert (await actions_of(system.pool, server_id))[1:] == [
        ("resetNetwork", "success"),
        ("resetNetwork", "success"),
        ("injectNetworkInfo", "success"),
        ("injectNetworkInfo", "success"),
    ]
    await admin.delete_and_wait(server_id)


async def test_the_addresses_are_pushed_into_the_domain(
    admin: ComputeClient, system: System, hypervisor: Any
) -> None:
    from compute_agent.virt.libvirt import network

    server_id = await active_server(admin, "injected", IMAGE)
    assert (await act(admin, server_id, {"injectNetworkInfo": None})).status == 202
    await wait_until_action_done(system.pool, server_id)
    shown = (await admin.get(f"/servers/{server_id}")).body["server"]["addresses"]
    domain = hypervisor.lookupByName(f"instance-{server_id}")
    injected = {(a.network, a.version, a.addr) for a in network.injected(domain)}
    assert injected == {
        (label, ip["version"], ip["addr"]) for label, ips in shown.items() for ip in ips
    }
    assert injected, "the server has fixed addresses to inject"
    await admin.delete_and_wait(server_id)


# --- createBackup ---------------------------------------------------------------------------------


async def _backup(
    client: ComputeClient, system: System, server_id: str, name: str, kind: str, rotation: int
) -> str:
    """Back the server up and wait until the backup (and its rotation) is done."""
    before = set(await _image_ids(system, server_id))
    body = {"createBackup": {"name": name, "backup_type": kind, "rotation": rotation}}
    reply = await act(client, server_id, body)
    assert reply.status == 202, reply
    await wait_until_action_done(system.pool, server_id)
    (image_id,) = set(await _image_ids(system, server_id)) - before
    return image_id


async def _image_ids(system: System, server_id: str) -> list[str]:
    assert system.pool is not None
    rows = await system.pool.fetch(
        "SELECT id FROM images WHERE server_id = $1", uuid.UUID(server_id)
    )
    return [str(r["id"]) for r in rows]


async def _live(client: ComputeClient, image_ids: list[str]) -> list[str]:
    return [i for i in image_ids if (await client.get(f"/images/{i}")).status == 200]


async def test_create_backup_with_the_xml_sample_makes_a_backup_image(
    admin: ComputeClient, system: System
) -> None:
    server_id = await active_server(admin, "backed-up", IMAGE)
    reply = await send_sample(admin, server_id, "3.19-back-up-server-instance-request.xml")
    assert (reply.status, reply.body) == (202, "")
    location = reply.headers["Location"]
    assert location.startswith(f"{system.url}/v2/{admin.tenant}/images/")
    image = await wait_for_image(admin, location.rsplit("/", 1)[1], "ACTIVE")
    assert (image["name"], image["server"]["id"]) == ("Backup 1", server_id)
    assert system.pool is not None
    row = await system.pool.fetchrow(
        "SELECT image_type, backup_type, backup_rotation FROM images WHERE id = $1",
        uuid.UUID(image["id"]),
    )
    assert tuple(row) == ("backup", "daily", 1)
    await wait_until_action_done(system.pool, server_id)
    assert (await actions_of(system.pool, server_id))[-1] == ("createBackup", "success")
    listed = await admin.get(f"/images/detail?server={server_id}&type=backup")
    assert [i["id"] for i in listed.body["images"]] == [image["id"]]
    await admin.delete_and_wait(server_id)


async def test_rotation_deletes_the_oldest_backups_of_that_type_and_server_only(
    api: ComputeClient, system: System
) -> None:
    """The owner backs up (createBackup is admin-or-owner); a weekly backup and another
    server's daily ones are not counted with this server's daily ones."""
    first = await active_server(api, "rotated", IMAGE)
    second = await active_server(api, "neighbour", IMAGE)
    neighbours = [await _backup(api, system, second, f"n{i}", "daily", 5) for i in range(2)]
    weekly = await _backup(api, system, first, "w", "weekly", 1)
    daily = [await _backup(api, system, first, f"d{i}", "daily", 2) for i in range(2)]
    assert await _live(api, daily) == daily
    daily.append(await _backup(api, system, first, "d2", "daily", 2))
    assert await _live(api, daily) == daily[1:]  # the oldest went
    daily.append(await _backup(api, system, first, "d3", "daily", 2))
    assert await _live(api, daily) == daily[2:]
    assert await _live(api, [weekly, *neighbours]) == [weekly, *neighbours]
    # a smaller rotation later trims to it, the new backup counting
    daily.append(await _backup(api, system, first, "d4", "daily", 1))
    assert await _live(api, daily) == daily[-1:]
    # the rotated-out backups' files leave the store (no server was built from them); the
    # live backups' stay
    assert system.pool is not None
    await purge_deleted_image_data(system.pool, DirectoryImageData(system.settings.image_store))
    store = system.settings.image_store
    assert [(store / f"{b}.qcow2").exists() for b in daily] == [False] * 4 + [True]
    assert all((store / f"{b}.qcow2").exists() for b in (weekly, *neighbours))
    await api.delete_and_wait(first)
    await api.delete_and_wait(second)


async def test_a_rotation_of_zero_keeps_no_backup_and_names_no_location(
    api: ComputeClient, system: System
) -> None:
    server_id = await active_server(api, "no-keep", IMAGE)
    kept = await _backup(api, system, server_id, "kept", "daily", 3)
    reply = await act(
        api, server_id, {"createBackup": {"name": "z", "backup_type": "daily", "rotation": 0}}
    )
    assert reply.status == 202 and "Location" not in reply.headers
    await wait_until_action_done(system.pool, server_id)
    assert await _live(api, await _image_ids(system, server_id)) == []
    assert (await api.get(f"/images/{kept}")).status == 404
    await api.delete_and_wait(server_id)


async def test_bad_backups_are_refused_and_change_nothing(
    api: ComputeClient, system: System
) -> None:
    server_id = await active_server(api, "bad-backups", IMAGE)
    base = {"name": "b", "backup_type": "daily", "rotation": 1}
    for body, status, message in (
        ({"backup_type": "daily", "rotation": 1}, 400, "requires name attribute"),
        ({"name": "b", "rotation": 1}, 400, "requires backup_type attribute"),
        ({"name": "b", "backup_type": "daily"}, 400, "requires rotation attribute"),
        ({**base, "rotation": "often"}, 400, "must be an integer"),
        ({**base, "rotation": -1}, 400, "greater than or equal to zero"),
        (None, 400, "Malformed createBackup entity"),
        ({**base, "metadata": {f"k{i}": "v" for i in range(200)}}, 413, "metadata items"),
    ):
        reply = await act(api, server_id, {"createBackup": body})
        assert reply.status == status, (body, reply)
        assert message in next(iter(reply.body.values()))["message"]
    xml = "<createBackup><name>b</name><backup_type>daily</backup_type></createBackup>"
    reply = await api.request(
        "POST",
        f"/servers/{server_id}/action",
        headers={"Content-Type": "application/xml"},
        data=xml.encode(),
    )
    assert reply.status == 400
    assert "requires rotation attribute" in reply.body["badRequest"]["message"]
    assert await _image_ids(system, server_id) == []
    assert await actions_of(system.pool, server_id) == [("create", "success")]
    await api.delete_and_wait(server_id)


# --- os-resetState, migrate on one host -----------------------------------------------------------


async def test_reset_state_with_the_samples_and_its_bad_values(
    admin: ComputeClient, system: System
) -> None:
    server_id = await active_server(admin, "reset", IMAGE)
    reply = await act(admin, server_id, {"os-resetState": {"state": "error"}})
    assert (reply.status, reply.body) == (202, "")
    assert await extended(admin, server_id) == ("ERROR", "error", None, 1)
    for sample in ("3.23-reset-server-state-request.xml", "3.22-reset-server-state-request.json"):
        assert (await send_sample(admin, server_id, sample)).status == 202
        assert (await extended(admin, server_id))[:3] == ("ACTIVE", "active", None)
    for body in ({"state": "ACTIVE"}, {"state": "deleted"}, {}, None):
        refused = await act(admin, server_id, {"os-resetState": body})
        assert refused.status == 400
        assert refused.body["badRequest"]["message"] == (
            "Desired state must be specified.  Valid states are: active, error"
        )
    assert (await actions_of(system.pool, server_id))[1:] == [("os-resetState", "success")] * 3
    await admin.delete_and_wait(server_id)


async def test_migrate_with_one_host_is_400_and_changes_nothing(
    admin: ComputeClient, system: System
) -> None:
    server_id = await active_server(admin, "nowhere-to-go", IMAGE)
    reply = await send_sample(admin, server_id, "3.9-migrate-server-request.json")
    assert reply.status == 400, reply
    assert "a migration needs another host" in reply.body["badRequest"]["message"]
    assert (await extended(admin, server_id))[:3] == ("ACTIVE", "active", None)
    assert await migrations_of(system.pool, server_id) == []
    assert await actions_of(system.pool, server_id) == [("create", "success")]
    await admin.delete_and_wait(server_id)


# --- on two hosts of the fake hypervisor ----------------------------------------------------------


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    tmp: Path = tmp_path_factory.mktemp("admin-cluster")
    async with fake_cluster(tmp, ("east", "west")) as the_cluster:
        yield the_cluster


@pytest.fixture
def cadmin(cluster: Cluster, http: aiohttp.ClientSession, tenant: str) -> ComputeClient:
    """An administrator of a fresh project on the cluster."""
    return ComputeClient(http, cluster.system.url, tenant, "admin")


@pytest.fixture
async def idle(cluster: Cluster) -> AsyncIterator[None]:
    """The cluster's hosts hold nothing before and after the test (it deletes what it made)."""
    assert await cluster.usage() == {host: IDLE for host in cluster.hosts}
    yield
    assert await cluster.usage() == {host: IDLE for host in cluster.hosts}
    assert all(not driver.domains for driver in cluster.drivers.values())


@pytest.mark.usefixtures("idle")
async def test_each_power_action_shows_its_task_while_the_host_works(
    cadmin: ComputeClient, cluster: Cluster
) -> None:
    server_id = await active_server(cadmin, "watched", IMAGE)
    driver = await cluster.driver_of(server_id)
    for operation, status_while, task, status_after in (
        ("pause", "ACTIVE", "pausing", "PAUSED"),
        ("unpause", "PAUSED", "unpausing", "ACTIVE"),
        ("suspend", "ACTIVE", "suspending", "SUSPENDED"),
        ("resume", "SUSPENDED", "resuming", "ACTIVE"),
    ):
        release = driver.hold(operation)
        assert (await act(cadmin, server_id, {operation: None})).status == 202
        status, _, task_state, _ = await extended(cadmin, server_id)
        assert (status, task_state) == (status_while, task)
        # one thing at a time: nothing else may start meanwhile
        assert (await act(cadmin, server_id, {"reboot": {"type": "HARD"}})).status == 409
        release.set()
        await cadmin.wait_for_status(server_id, status_after)
        await wait_until_action_done(cluster.pool, server_id)
    await cadmin.delete_and_wait(server_id)


@pytest.mark.usefixtures("idle")
async def test_a_failed_power_action_leaves_the_server_as_it_was(
    cadmin: ComputeClient, cluster: Cluster
) -> None:
    server_id = await active_server(cadmin, "stubborn", IMAGE)
    (await cluster.driver_of(server_id)).fail_next("pause", "the guest would not freeze")
    assert (await act(cadmin, server_id, {"pause": None})).status == 202
    await wait_until_action_done(cluster.pool, server_id)
    assert await extended(cadmin, server_id) == ("ACTIVE", "active", None, 1)
    assert (await actions_of(cluster.pool, server_id))[-1] == ("pause", "error")
    assert await _last_fault(cluster, server_id) == "the guest would not freeze"
    await cadmin.delete_and_wait(server_id)


@pytest.mark.usefixtures("idle")
async def test_a_failed_network_action_is_recorded_and_changes_no_status(
    cadmin: ComputeClient, cluster: Cluster
) -> None:
    server_id = await active_server(cadmin, "unplugged", IMAGE)
    driver = await cluster.driver_of(server_id)
    driver.fail_next("reset_network", "the guest agent did not answer")
    assert (await act(cadmin, server_id, {"resetNetwork": None})).status == 202
    await wait_until_action_done(cluster.pool, server_id)
    assert (await extended(cadmin, server_id))[:3] == ("ACTIVE", "active", None)
    assert (await actions_of(cluster.pool, server_id))[-1] == ("resetNetwork", "error")
    assert await _last_fault(cluster, server_id) == "the guest agent did not answer"
    assert (await act(cadmin, server_id, {"resetNetwork": None})).status == 202
    await wait_until_action_done(cluster.pool, server_id)
    domain = driver.domains[f"instance-{server_id}"]
    assert (domain.network_resets, [a.network for a in domain.network]) == (1, ["private"])
    await cadmin.delete_and_wait(server_id)


@pytest.mark.usefixtures("idle")
async def test_network_actions_are_accepted_while_a_task_runs(
    cadmin: ComputeClient, cluster: Cluster
) -> None:
    """Any task, any state: the host runs the command after the one it is busy with."""
    server_id = await active_server(cadmin, "busy", IMAGE)
    driver = await cluster.driver_of(server_id)
    release = driver.hold("reboot")
    assert (await act(cadmin, server_id, {"reboot": {"type": "SOFT"}})).status == 202
    await cadmin.wait_for_status(server_id, "REBOOT")
    assert (await act(cadmin, server_id, {"injectNetworkInfo": None})).status == 202
    assert (await extended(cadmin, server_id))[:3] == ("REBOOT", "active", "rebooting")
    release.set()
    await cadmin.wait_for_status(server_id, "ACTIVE")
    await wait_until_action_done(cluster.pool, server_id)
    assert (await actions_of(cluster.pool, server_id))[1:] == [
        ("reboot", "success"),
        ("injectNetworkInfo", "success"),
    ]
    assert driver.domains[f"instance-{server_id}"].network
    await cadmin.delete_and_wait(server_id)


# --- migrate between the two hosts ----------------------------------------------------------------


@pytest.mark.usefixtures("idle")
async def test_migrate_moves_the_server_and_confirm_frees_the_first_host(
    cadmin: ComputeClient, cluster: Cluster
) -> None:
    server_id = await active_server(cadmin, "migrant", IMAGE, "2")
    source = await cluster.host_of(server_id)
    dest = cluster.other(source)
    before = (await cadmin.get(f"/servers/{server_id}")).body["server"]
    assert before["OS-EXT-SRV-ATTR:host"] == source

    release = cluster.drivers[source].hold("migrate_disk_and_power_off")
    sample = "nova-2013.1/os-admin-actions/admin-actions-migrate.xml"
    assert (await send_sample(cadmin, server_id, sample)).status == 202
    assert await wait_for_task(cadmin, server_id, "resize_migrating") == "RESIZE"
    release.set()
    migrated = await cadmin.wait_for_status(server_id, "VERIFY_RESIZE")
    assert migrated["flavor"]["id"] == "2"  # same flavor, another host
    assert migrated["OS-EXT-SRV-ATTR:host"] == dest
    assert migrated["addresses"] == before["addresses"]
    assert await cluster.usage() == {source: FLAVORS["2"], dest: FLAVORS["2"]}

    assert (await act(cadmin, server_id, {"confirmResize": None})).status == 204
    await wait_until_action_done(cluster.pool, server_id)
    assert await extended(cadmin, server_id) == ("ACTIVE", "active", None, 1)
    assert await cluster.usage() == {source: IDLE, dest: FLAVORS["2"]}
    assert f"instance-{server_id}" not in cluster.drivers[source].domains
    assert [m["status"] for m in await migrations_of(cluster.pool, server_id)] == ["confirmed"]
    assert (await actions_of(cluster.pool, server_id))[1:] == [
        ("migrate", "success"),
        ("confirmResize", "success"),
    ]
    await cadmin.delete_and_wait(server_id)


@pytest.mark.usefixtures("idle")
async def test_migrate_then_revert_brings_the_server_back(
    cadmin: ComputeClient, cluster: Cluster
) -> None:
    server_id = await active_server(cadmin, "returner", IMAGE)
    source = await cluster.host_of(server_id)
    assert (await send_sample(cadmin, server_id, "3.9-migrate-server-request.json")).status == 202
    await cadmin.wait_for_status(server_id, "VERIFY_RESIZE")
    assert await cluster.host_of(server_id) == cluster.other(source)
    assert (await act(cadmin, server_id, {"revertResize": None})).status == 202
    back = await cadmin.wait_for_status(server_id, "ACTIVE")
    await wait_until_action_done(cluster.pool, server_id)
    assert back["OS-EXT-SRV-ATTR:host"] == source
    assert await cluster.usage() == {source: FLAVORS["1"], cluster.other(source): IDLE}
    assert [m["status"] for m in await migrations_of(cluster.pool, server_id)] == ["reverted"]
    await cadmin.delete_and_wait(server_id)


@pytest.mark.usefixtures("idle")
async def test_a_migration_with_no_room_elsewhere_leaves_the_server_active(
    cadmin: ComputeClient, cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    server_id = await active_server(cadmin, "stays", IMAGE, "4")
    source = await cluster.host_of(server_id)
    # another project's m1.large takes the other host (8 GB, 12 GB with the RAM overcommit):
    # it could take the server when empty, so the migration is accepted, but not now
    filler = ComputeClient(http, cluster.system.url, f"{cadmin.tenant}-f", "admin")
    fillers = [await active_server(filler, "filler", IMAGE, "4")]
    assert await cluster.host_of(fillers[0]) == cluster.other(source)
    assert (await act(cadmin, server_id, {"migrate": None})).status == 202
    await wait_until_action_done(cluster.pool, server_id)
    assert (await extended(cadmin, server_id))[:3] == ("ACTIVE", "active", None)
    assert await cluster.host_of(server_id) == source
    assert (await actions_of(cluster.pool, server_id))[-1] == ("migrate", "error")
    assert "No valid host" in await _last_fault(cluster, server_id)
    for each in fillers:
        await filler.delete_and_wait(each)
    await cadmin.delete_and_wait(server_id)


# --- os-resetState rescues a server stuck in a task -----------------------------------------------


@pytest.mark.usefixtures("idle")
async def test_reset_state_rescues_a_server_stuck_in_a_task(
    cadmin: ComputeClient, cluster: Cluster
) -> None:
    server_id = await active_server(cadmin, "stuck", IMAGE)
    driver = await cluster.driver_of(server_id)
    release = driver.hold("reboot")  # the host never gets on with it
    reboot = await act(cadmin, server_id, {"reboot": {"type": "HARD"}})
    await cadmin.wait_for_status(server_id, "HARD_REBOOT")
    assert (await act(cadmin, server_id, {"pause": None})).status == 409

    reset = await act(cadmin, server_id, {"os-resetState": {"state": "active"}})
    assert reset.status == 202
    assert (await extended(cadmin, server_id))[:3] == ("ACTIVE", "active", None)
    trail = await actions_of(cluster.pool, server_id)
    assert trail[1:] == [("reboot_hard", "error"), ("os-resetState", "success")]
    abandoned = await cluster.pool.fetchval(
        "SELECT message FROM actions WHERE request_id = $1",
        reboot.headers["X-Compute-Request-Id"],
    )
    assert abandoned == "abandoned: the server's state was reset by admin"

    release.set()  # the host finishes after all: its report no longer counts
    await asyncio.sleep(0.3)
    assert (await extended(cadmin, server_id))[:3] == ("ACTIVE", "active", None)
    assert (await actions_of(cluster.pool, server_id))[1][1] == "error"
    assert (await act(cadmin, server_id, {"pause": None})).status == 202  # usable again
    await cadmin.wait_for_status(server_id, "PAUSED")
    await wait_until_action_done(cluster.pool, server_id)
    await cadmin.delete_and_wait(server_id)


@pytest.mark.usefixtures("idle")
async def test_reset_state_ends_a_stuck_migration_and_frees_its_destination(
    cadmin: ComputeClient, cluster: Cluster
) -> None:
    server_id = await active_server(cadmin, "half-moved", IMAGE, "2")
    source = await cluster.host_of(server_id)
    dest = cluster.other(source)
    release = cluster.drivers[source].hold("migrate_disk_and_power_off")
    assert (await act(cadmin, server_id, {"migrate": None})).status == 202
    await cadmin.wait_for_status(server_id, "RESIZE")
    for _ in range(100):  # the conductor placed it: the destination holds a claim
        if (await cluster.usage())[dest] == FLAVORS["2"]:
            break
        await asyncio.sleep(0.05)
    assert await cluster.usage() == {source: FLAVORS["2"], dest: FLAVORS["2"]}

    assert (await act(cadmin, server_id, {"os-resetState": {"state": "error"}})).status == 202
    assert (await extended(cadmin, server_id))[:3] == ("ERROR", "error", None)
    assert await cluster.usage() == {source: FLAVORS["2"], dest: IDLE}
    assert [(m["status"], m["held"]) for m in await migrations_of(cluster.pool, server_id)] == [
        ("error", None)
    ]
    reset = (
        await cluster.pool.fetch(
            "SELECT message FROM actions WHERE server_id = $1 AND action = 'os-resetState'",
            uuid.UUID(server_id),
        )
    )[0]["message"]
    assert f"its claim on {dest} released" in reset

    release.set()  # the source powers the guest off after all; its report is refused
    await asyncio.sleep(0.3)
    assert await cluster.host_of(server_id) == source
    # the operator's next step: a hard reboot brings the guest back
    assert (await act(cadmin, server_id, {"os-resetState": {"state": "active"}})).status == 202
    assert (await act(cadmin, server_id, {"reboot": {"type": "HARD"}})).status == 202
    await cadmin.wait_for_status(server_id, "ACTIVE")
    await wait_until_action_done(cluster.pool, server_id)
    assert await extended(cadmin, server_id) == ("ACTIVE", "active", None, 1)
    await cadmin.delete_and_wait(server_id)


@pytest.mark.usefixtures("idle")
async def test_reset_state_of_a_stuck_backup_puts_its_image_in_error(
    cadmin: ComputeClient, cluster: Cluster
) -> None:
    server_id = await active_server(cadmin, "stuck-backup", IMAGE)
    release = (await cluster.driver_of(server_id)).hold("snapshot")
    body = {"createBackup": {"name": "never", "backup_type": "daily", "rotation": 2}}
    reply = await act(cadmin, server_id, body)
    image_id = reply.headers["Location"].rsplit("/", 1)[1]
    await wait_for_image(cadmin, image_id, "SAVING")
    assert (await extended(cadmin, server_id))[2] == "image_backup"

    assert (await act(cadmin, server_id, {"os-resetState": {"state": "active"}})).status == 202
    image = await wait_for_image(cadmin, image_id, "ERROR")
    assert image["fault"]["message"].startswith("abandoned")
    release.set()
    await asyncio.sleep(0.3)
    assert (await cadmin.get(f"/images/{image_id}")).body["image"]["status"] == "ERROR"
    assert (await extended(cadmin, server_id))[:3] == ("ACTIVE", "active", None)
    await cadmin.delete_and_wait(server_id)


async def _last_fault(cluster: Cluster, server_id: str) -> str:
    message: str = await cluster.pool.fetchval(
        "SELECT message FROM server_faults WHERE server_id = $1 ORDER BY id DESC LIMIT 1",
        uuid.UUID(server_id),
    )
    return message


# --- one at a time, and nothing half-done when the broker refuses ------------------------------


@pytest.mark.usefixtures("idle")
async def test_two_admin_actions_racing_on_one_server_cannot_both_win(
    cadmin: ComputeClient, cluster: Cluster
) -> None:
    server_id = await active_server(cadmin, "raced", IMAGE)
    driver = await cluster.driver_of(server_id)
    holds = [driver.hold(operation) for operation in ("pause", "suspend", "snapshot")]
    backup = {"createBackup": {"name": "b", "backup_type": "daily", "rotation": 1}}
    replies = await asyncio.gather(
        act(cadmin, server_id, {"pause": None}),
        act(cadmin, server_id, {"suspend": None}),
        act(cadmin, server_id, backup),
        act(cadmin, server_id, {"migrate": None}),
    )
    assert sorted(r.status for r in replies) == [202, 409, 409, 409]
    assert len(await actions_of(cluster.pool, server_id)) == 2  # create, and the winner
    for hold in holds:
        hold.set()
    await wait_until_action_done(cluster.pool, server_id)
    if (await extended(cadmin, server_id))[0] == "VERIFY_RESIZE":
        assert (await act(cadmin, server_id, {"confirmResize": None})).status == 204
        await wait_until_action_done(cluster.pool, server_id)
    await cadmin.delete_and_wait(server_id)


@pytest.mark.usefixtures("idle")
async def test_an_admin_action_the_broker_refuses_is_taken_back_whole(
    cadmin: ComputeClient, cluster: Cluster
) -> None:
    """The server's host has no queue: 503, and the server and its images are as before; the
    refused actions stay in the audit trail as errors."""
    server_id = await active_server(cadmin, "unreachable", IMAGE)
    real_host = await cluster.host_of(server_id)
    await cluster.pool.execute(
        """INSERT INTO compute_hosts (name, hypervisor_type, hypervisor_uri, vcpus, ram_mb,
                                      disk_gb, last_heartbeat, enabled)
           VALUES ('nowhere', 'fake', 'fake://', 1, 1, 1, now(), false)"""
    )
    await cluster.pool.execute(
        "UPDATE servers SET host = 'nowhere' WHERE id = $1", uuid.UUID(server_id)
    )
    before = await extended(cadmin, server_id)
    try:
        for body in (
            {"pause": None},
            {"suspend": None},
            {"createBackup": {"name": "b", "backup_type": "daily", "rotation": 1}},
            {"resetNetwork": None},
            {"injectNetworkInfo": None},
        ):
            reply = await act(cadmin, server_id, body)
            assert (reply.status, next(iter(reply.body))) == (503, "serviceUnavailable"), body
            assert await extended(cadmin, server_id) == before
        assert await _image_ids_of(cluster, server_id) == []
        assert [r for _, r in await actions_of(cluster.pool, server_id)] == [
            "success",
            *["error"] * 5,
        ]
    finally:
        await cluster.pool.execute(
            "UPDATE servers SET host = $2 WHERE id = $1", uuid.UUID(server_id), real_host
        )
        await cluster.pool.execute("DELETE FROM compute_hosts WHERE name = 'nowhere'")
    await cadmin.delete_and_wait(server_id)


async def _image_ids_of(cluster: Cluster, server_id: str) -> list[uuid.UUID]:
    rows = await cluster.pool.fetch(
        "SELECT id FROM images WHERE server_id = $1", uuid.UUID(server_id)
    )
    return [r["id"] for r in rows]
