"""Server actions on a system of two hosts with the fake hypervisor: resizes from one host to
the other, the task states seen while a (slow) host works, and what failures leave behind.

The system here is this module's own (its own database), so its hosts' usage is exactly what
its tests make it; the fake hypervisor is told to be slow (``hold``) or to fail
(``fail_next``) the way a real host can be.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from api_gateway.compute.specs import instance_spec
from compute_agent.virt.fake import FakeDriver
from shared import bus as bus_mod
from shared.db import hosts, server_migrations, servers
from shared.messages import HostCapacity, ResizeServer
from shared.states import PowerState
from stratus.system import System
from tests import conftest
from tests.conftest import IMAGE
from tests.support.actions import (
    FLAVORS,
    act,
    actions_of,
    active_server,
    host_usage,
    migrations_of,
    server_row,
    wait_for_image,
    wait_until_action_done,
)
from tests.support.client import ComputeClient
from tests.support.databases import fresh_database

HOSTS = ("alpha", "beta")
IDLE = (0, 0, 0)


@dataclass
class Cluster:
    system: System
    drivers: dict[str, FakeDriver]

    @property
    def pool(self) -> asyncpg.Pool:
        assert self.system.pool is not None
        return self.system.pool

    async def host_of(self, server_id: str) -> str:
        host: str = (await server_row(self.pool, server_id))["host"]
        return host

    async def driver_of(self, server_id: str) -> FakeDriver:
        return self.drivers[await self.host_of(server_id)]

    def other(self, host: str) -> str:
        return next(h for h in HOSTS if h != host)

    async def usage(self) -> dict[str, tuple[int, int, int]]:
        return {host: await host_usage(self.pool, host) for host in HOSTS}


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    # 8 GB of RAM each (12 GB with the RAM overcommit): m1.large fits, m1.xlarge nowhere
    drivers = {host: FakeDriver(vcpus=16, ram_mb=8192, disk_gb=500) for host in HOSTS}
    async with fresh_database() as url:
        tmp: Path = tmp_path_factory.mktemp("two-hosts")
        # 20 GB of RAM per project (a resize's growth counts against it)
        settings = conftest.test_settings(tmp, quota_ram_mb=20000)
        system = System(settings, url, dict(drivers))
        await system.start()
        try:
            yield Cluster(system, drivers)
        finally:
            await system.stop()


@pytest.fixture
def api(cluster: Cluster, http: aiohttp.ClientSession, tenant: str) -> ComputeClient:
    return ComputeClient(http, cluster.system.url, tenant, "alice")


@pytest.fixture(autouse=True)
async def _hosts_end_idle(cluster: Cluster) -> AsyncIterator[None]:
    """Every test here deletes what it made: the hosts hold nothing before and after."""
    assert await cluster.usage() == {host: IDLE for host in HOSTS}
    yield
    assert await cluster.usage() == {host: IDLE for host in HOSTS}
    assert all(not d.domains for d in cluster.drivers.values())


async def _status_becomes(api: ComputeClient, server_id: str, status: str) -> None:
    await api.wait_for_status(server_id, status, timeout_s=10)


# --- resizes between hosts -----------------------------------------------------------------


async def test_resize_moves_to_the_other_host_and_confirm_frees_the_first(
    api: ComputeClient, cluster: Cluster
) -> None:
    server_id = await active_server(api, "mover", IMAGE, "1")
    source = await cluster.host_of(server_id)
    dest = cluster.other(source)
    before = (await api.get(f"/servers/{server_id}")).body["server"]

    assert (await act(api, server_id, {"resize": {"flavorRef": "2"}})).status == 202
    resized = await api.wait_for_status(server_id, "VERIFY_RESIZE")
    assert resized["flavor"]["id"] == "2"
    assert resized["hostId"] != before["hostId"]
    assert resized["addresses"] == before["addresses"]
    assert await cluster.host_of(server_id) == dest
    assert await cluster.usage() == {source: FLAVORS["1"], dest: FLAVORS["2"]}
    name = f"instance-{server_id}"
    original, copy = cluster.drivers[source].domains[name], cluster.drivers[dest].domains[name]
    assert (original.power, original.instance.flavor.id) == (PowerState.SHUTDOWN, "1")
    assert (copy.power, copy.instance.flavor.id) == (PowerState.RUNNING, "2")

    assert (await act(api, server_id, {"confirmResize": None})).status == 204
    await wait_until_action_done(cluster.pool, server_id)
    assert (await api.get(f"/servers/{server_id}")).body["server"]["status"] == "ACTIVE"
    assert name not in cluster.drivers[source].domains
    assert await cluster.usage() == {source: IDLE, dest: FLAVORS["2"]}
    await api.delete_and_wait(server_id)


async def test_revert_comes_back_to_the_first_host_with_the_old_flavor(
    api: ComputeClient, cluster: Cluster
) -> None:
    server_id = await active_server(api, "homesick", IMAGE, "2")
    source = await cluster.host_of(server_id)
    dest = cluster.other(source)
    assert (await act(api, server_id, {"resize": {"flavorRef": "3"}})).status == 202
    await api.wait_for_status(server_id, "VERIFY_RESIZE")

    release = cluster.drivers[source].hold("finish_revert_migration")
    assert (await act(api, server_id, {"revertResize": None})).status == 202
    await _status_becomes(api, server_id, "REVERT_RESIZE")
    await wait_until_dest_released(cluster, dest)
    release.set()
    active = await api.wait_for_status(server_id, "ACTIVE")
    assert active["flavor"]["id"] == "2"
    assert await cluster.host_of(server_id) == source
    name = f"instance-{server_id}"
    assert name not in cluster.drivers[dest].domains
    assert cluster.drivers[source].domains[name].power is PowerState.RUNNING
    await wait_until_action_done(cluster.pool, server_id)
    assert await cluster.usage() == {source: FLAVORS["2"], dest: IDLE}
    assert [m["status"] for m in await migrations_of(cluster.pool, server_id)] == ["reverted"]
    await api.delete_and_wait(server_id)


async def wait_until_dest_released(cluster: Cluster, dest: str) -> None:
    """The destination removed its copy and gave its claim back (the revert's first step)."""
    for _ in range(200):
        if await host_usage(cluster.pool, dest) == IDLE:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{dest} still holds the resized copy")


async def test_a_migration_keeps_the_flavor_and_must_change_host(
    api: ComputeClient, cluster: Cluster
) -> None:
    """The conductor's side of a cold migration (a later action): a resize record whose new
    flavor is the old one, sent as the gateway sends a resize."""
    server_id = await active_server(api, "migrant", IMAGE, "1")
    source = await cluster.host_of(server_id)
    sid = uuid.UUID(server_id)
    migration_id = uuid.uuid4()
    action_id = uuid.uuid4()
    async with cluster.pool.acquire() as conn, conn.transaction():
        server = await servers.get(conn, sid, None)
        assert server is not None
        spec = await instance_spec(conn, server)
        await conn.execute(
            "INSERT INTO actions (id, request_id, server_id, action, tenant_id, user_id)"
            " VALUES ($1, 'req-test', $2, 'migrate', $3, 'alice')",
            action_id,
            sid,
            api.tenant,
        )
        await servers.set_task(conn, sid, "resize_prep")
        await server_migrations.insert(
            conn,
            server_migrations.NewMigration(
                migration_id, sid, action_id, source, spec, new_flavor=spec.flavor
            ),
        )
    assert cluster.system.bus is not None
    await cluster.system.bus.publish(
        bus_mod.CONDUCTOR,
        ResizeServer(server_id=sid, action_id=action_id, migration_id=migration_id),
    )
    migrated = await api.wait_for_status(server_id, "VERIFY_RESIZE")
    assert migrated["flavor"]["id"] == "1"
    assert await cluster.host_of(server_id) == cluster.other(source)
    assert (await act(api, server_id, {"confirmResize": None})).status == 204
    await wait_until_action_done(cluster.pool, server_id)
    await api.delete_and_wait(server_id)


async def test_a_resize_counts_against_the_quota_from_the_moment_it_is_accepted(
    api: ComputeClient, cluster: Cluster
) -> None:
    big = await active_server(api, "big", IMAGE, "4")  # 8 GB of the project's 20
    small = await active_server(api, "small", IMAGE, "1")
    too_much = await act(api, small, {"resize": {"flavorRef": "5"}})  # 8 + 16 GB
    assert (too_much.status, too_much.headers["Retry-After"]) == (413, "0")
    assert "overLimit" in too_much.body

    release = (await cluster.driver_of(small)).hold("migrate_disk_and_power_off")
    assert (await act(api, small, {"resize": {"flavorRef": "4"}})).status == 202
    await _status_becomes(api, small, "RESIZE")
    # the growth is not in the server's row yet, but counts: 8 + 8 GB used, 8 more is over
    refused = await api.create_server("third", IMAGE, "4")
    assert refused.status == 413, refused
    release.set()
    await api.wait_for_status(small, "VERIFY_RESIZE")
    assert (await act(api, small, {"revertResize": None})).status == 202
    await api.wait_for_status(small, "ACTIVE")
    await wait_until_action_done(cluster.pool, small)
    await api.delete_and_wait(small)
    await api.delete_and_wait(big)


# --- one action at a time --------------------------------------------------------------------


async def test_an_action_not_legal_now_is_409(api: ComputeClient, cluster: Cluster) -> None:
    spawns = [cluster.drivers[host].hold("spawn") for host in HOSTS]
    server_id = (await api.create_server("building", IMAGE)).body["server"]["id"]
    building = await act(api, server_id, {"changePassword": {"adminPass": "x"}})
    assert building.status == 409, building
    assert next(iter(building.body.values()))["message"].startswith("Cannot 'changePassword'")
    for spawn in spawns:
        spawn.set()
    await api.wait_for_status(server_id, "ACTIVE")
    await wait_until_action_done(cluster.pool, server_id)
    for body in ({"confirmResize": None}, {"revertResize": None}):
        refused = await act(api, server_id, body)
        assert refused.status == 409, refused
        assert "vm_state active" in next(iter(refused.body.values()))["message"]
    await api.delete_and_wait(server_id)


async def test_two_actions_racing_on_one_server_cannot_both_win(
    api: ComputeClient, cluster: Cluster
) -> None:
    server_id = await active_server(api, "racer", IMAGE)
    driver = await cluster.driver_of(server_id)
    operations = ("reboot", "rebuild", "migrate_disk_and_power_off", "set_admin_password")
    holds = [driver.hold(operation) for operation in operations]  # the winner stays busy
    replies = await asyncio.gather(
        act(api, server_id, {"reboot": {"type": "HARD"}}),
        act(api, server_id, {"rebuild": {"imageRef": IMAGE}}),
        act(api, server_id, {"resize": {"flavorRef": "2"}}),
        act(api, server_id, {"changePassword": {"adminPass": "pw"}}),
    )
    assert sorted(r.status for r in replies) == [202, 409, 409, 409]
    assert len([a for a, _ in await actions_of(cluster.pool, server_id)]) == 2
    for hold in holds:
        hold.set()
    await wait_until_action_done(cluster.pool, server_id)
    if (await api.get(f"/servers/{server_id}")).body["server"]["status"] == "VERIFY_RESIZE":
        assert (await act(api, server_id, {"confirmResize": None})).status == 204
        await wait_until_action_done(cluster.pool, server_id)
    await api.delete_and_wait(server_id)


# --- task states of a running action ---------------------------------------------------------


async def test_each_action_shows_its_status_while_the_host_works(
    api: ComputeClient, cluster: Cluster
) -> None:
    server_id = await active_server(api, "watched", IMAGE, "1")
    driver = await cluster.driver_of(server_id)

    for operation, body, status in (
        ("set_admin_password", {"changePassword": {"adminPass": "x"}}, "PASSWORD"),
        ("reboot", {"reboot": {"type": "SOFT"}}, "REBOOT"),
        ("reboot", {"reboot": {"type": "HARD"}}, "HARD_REBOOT"),
        ("rebuild", {"rebuild": {"imageRef": IMAGE}}, "REBUILD"),
    ):
        release = driver.hold(operation)
        assert (await act(api, server_id, body)).status == 202
        await _status_becomes(api, server_id, status)
        # one thing at a time: nothing else may start meanwhile
        assert (await act(api, server_id, {"reboot": {"type": "HARD"}})).status == 409
        release.set()
        await api.wait_for_status(server_id, "ACTIVE")
        await wait_until_action_done(cluster.pool, server_id)

    release = driver.hold("snapshot")
    reply = await act(api, server_id, {"createImage": {"name": "slow"}})
    image_id = reply.headers["Location"].rsplit("/", 1)[1]
    saving = await wait_for_image(api, image_id, "SAVING")
    assert saving["server"]["id"] == server_id
    assert (await api.get(f"/servers/{server_id}")).body["server"]["status"] == "ACTIVE"
    conflict = await act(api, server_id, {"createImage": {"name": "second"}})
    assert (conflict.status, next(iter(conflict.body))) == (409, "backupOrResizeInProgress")
    release.set()
    await wait_for_image(api, image_id, "ACTIVE")
    await wait_until_action_done(cluster.pool, server_id)

    release = driver.hold("migrate_disk_and_power_off")
    assert (await act(api, server_id, {"resize": {"flavorRef": "2"}})).status == 202
    await _status_becomes(api, server_id, "RESIZE")
    release.set()
    await api.wait_for_status(server_id, "VERIFY_RESIZE")
    assert (await act(api, server_id, {"revertResize": None})).status == 202
    await api.wait_for_status(server_id, "ACTIVE")
    await wait_until_action_done(cluster.pool, server_id)
    await api.delete_and_wait(server_id)


# --- failures --------------------------------------------------------------------------------


async def test_a_failed_reboot_or_rebuild_is_error_with_a_fault(
    api: ComputeClient, cluster: Cluster
) -> None:
    for operation, body in (
        ("reboot", {"reboot": {"type": "HARD"}}),
        ("rebuild", {"rebuild": {"imageRef": IMAGE}}),
    ):
        server_id = await active_server(api, f"fails-{operation}", IMAGE)
        (await cluster.driver_of(server_id)).fail_next(operation, f"the host could not {operation}")
        assert (await act(api, server_id, body)).status == 202
        failed = await api.wait_for_status(server_id, "ERROR")
        assert failed["fault"]["message"] == f"the host could not {operation}"
        assert (await actions_of(cluster.pool, server_id))[-1][1] == "error"
        # a rebuild is the way out of ERROR (nova's recovery; docs/compatibility.md)
        assert (await act(api, server_id, {"rebuild": {"imageRef": IMAGE}})).status == 202
        await api.wait_for_status(server_id, "ACTIVE")
        await wait_until_action_done(cluster.pool, server_id)
        assert (await actions_of(cluster.pool, server_id))[-1] == ("rebuild", "success")
        await api.delete_and_wait(server_id)


async def test_a_resize_the_source_cannot_start_leaves_the_server_as_it_was(
    api: ComputeClient, cluster: Cluster
) -> None:
    server_id = await active_server(api, "stuck", IMAGE, "1")
    source = await cluster.host_of(server_id)
    cluster.drivers[source].fail_next("migrate_disk_and_power_off", "the guest would not stop")
    assert (await act(api, server_id, {"resize": {"flavorRef": "2"}})).status == 202
    await wait_until_action_done(cluster.pool, server_id)
    server = (await api.get(f"/servers/{server_id}")).body["server"]
    assert (server["status"], server["flavor"]["id"]) == ("ACTIVE", "1")
    assert await cluster.usage() == {source: FLAVORS["1"], cluster.other(source): IDLE}
    assert (await actions_of(cluster.pool, server_id))[-1] == ("resize", "error")
    assert await _last_fault(cluster.pool, server_id) == "the guest would not stop"
    assert [m["status"] for m in await migrations_of(cluster.pool, server_id)] == ["error"]
    await api.delete_and_wait(server_id)


async def test_a_resize_the_destination_fails_is_rolled_back_to_the_source(
    api: ComputeClient, cluster: Cluster
) -> None:
    server_id = await active_server(api, "rolled-back", IMAGE, "1")
    source = await cluster.host_of(server_id)
    dest = cluster.other(source)
    cluster.drivers[dest].fail_next("finish_migration", "no room for the new flavor")
    release = cluster.drivers[source].hold("finish_revert_migration")
    assert (await act(api, server_id, {"resize": {"flavorRef": "2"}})).status == 202
    await _status_becomes(api, server_id, "REVERT_RESIZE")
    release.set()
    server = await api.wait_for_status(server_id, "ACTIVE")
    await wait_until_action_done(cluster.pool, server_id)
    assert server["flavor"]["id"] == "1"
    assert await cluster.host_of(server_id) == source
    assert await cluster.usage() == {source: FLAVORS["1"], dest: IDLE}
    assert f"instance-{server_id}" not in cluster.drivers[dest].domains
    assert cluster.drivers[source].domains[f"instance-{server_id}"].power is PowerState.RUNNING
    assert (await actions_of(cluster.pool, server_id))[-1] == ("resize", "error")
    assert await _last_fault(cluster.pool, server_id) == "no room for the new flavor"
    await api.delete_and_wait(server_id)


async def test_a_resize_no_host_could_ever_take_is_refused_at_once(
    api: ComputeClient, cluster: Cluster
) -> None:
    server_id = await active_server(api, "too-big", IMAGE, "1")
    before = (await api.get(f"/servers/{server_id}")).body["server"]
    reply = await act(api, server_id, {"resize": {"flavorRef": "5"}})  # 16 GB: no host has it
    assert reply.status == 503 and "serverCapacityUnavailable" in reply.body
    assert (await api.get(f"/servers/{server_id}")).body["server"] == before
    await api.delete_and_wait(server_id)


async def test_a_resize_no_host_has_room_for_now_leaves_the_server_active(
    api: ComputeClient, cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    server_id = await active_server(api, "waits", IMAGE, "1")
    # another project fills both hosts with m1.large: 4 GB or less is left on each
    filler = ComputeClient(http, cluster.system.url, f"{api.tenant}-filler", "bob")
    fillers = [await active_server(filler, f"filler-{i}", IMAGE, "4") for i in range(2)]
    assert {await cluster.host_of(f) for f in fillers} == set(HOSTS)
    assert (await act(api, server_id, {"resize": {"flavorRef": "4"}})).status == 202
    await wait_until_action_done(cluster.pool, server_id)
    server = (await api.get(f"/servers/{server_id}")).body["server"]
    assert (server["status"], server["flavor"]["id"]) == ("ACTIVE", "1")
    assert "No valid host" in await _last_fault(cluster.pool, server_id)
    for each in fillers:
        await filler.delete_and_wait(each)
    await api.delete_and_wait(server_id)


async def test_a_failed_snapshot_is_an_image_in_error_and_the_server_runs_on(
    api: ComputeClient, cluster: Cluster
) -> None:
    server_id = await active_server(api, "no-snap", IMAGE)
    (await cluster.driver_of(server_id)).fail_next("snapshot", "the disk could not be read")
    reply = await act(api, server_id, {"createImage": {"name": "broken"}})
    assert reply.status == 202
    image = await wait_for_image(api, reply.headers["Location"].rsplit("/", 1)[1], "ERROR")
    assert image["fault"]["message"] == "the disk could not be read"
    await wait_until_action_done(cluster.pool, server_id)
    assert (await api.get(f"/servers/{server_id}")).body["server"]["status"] == "ACTIVE"
    await api.delete_and_wait(server_id)


@pytest.mark.parametrize("failing", ["confirm", "revert"])
async def test_a_failed_confirm_or_revert_is_error_and_delete_frees_both_hosts(
    api: ComputeClient, cluster: Cluster, failing: str
) -> None:
    server_id = await active_server(api, f"bad-{failing}", IMAGE, "1")
    source = await cluster.host_of(server_id)
    dest = cluster.other(source)
    assert (await act(api, server_id, {"resize": {"flavorRef": "2"}})).status == 202
    await api.wait_for_status(server_id, "VERIFY_RESIZE")
    if failing == "confirm":
        cluster.drivers[source].fail_next("confirm_migration", "the original is stuck")
        assert (await act(api, server_id, {"confirmResize": None})).status == 204
    else:
        cluster.drivers[dest].fail_next("destroy", "the copy is stuck")
        assert (await act(api, server_id, {"revertResize": None})).status == 202
    failed = await api.wait_for_status(server_id, "ERROR")
    assert failed["fault"]["message"] in {"the original is stuck", "the copy is stuck"}
    # both claims are still held (the original and the copy both exist) ...
    assert await cluster.usage() == {source: FLAVORS["1"], dest: FLAVORS["2"]}
    # ... until the server is deleted, which frees them and the original too
    await api.delete_and_wait(server_id)
    await wait_until_gone(cluster, source, server_id)


async def test_deleting_a_server_waiting_for_confirmation_frees_both_hosts(
    api: ComputeClient, cluster: Cluster
) -> None:
    server_id = await active_server(api, "abandoned", IMAGE, "1")
    source = await cluster.host_of(server_id)
    assert (await act(api, server_id, {"resize": {"flavorRef": "2"}})).status == 202
    await api.wait_for_status(server_id, "VERIFY_RESIZE")
    await api.delete_and_wait(server_id)
    await wait_until_gone(cluster, source, server_id)
    assert [m["status"] for m in await migrations_of(cluster.pool, server_id)] == ["error"]


async def wait_until_gone(cluster: Cluster, host: str, server_id: str) -> None:
    for _ in range(200):
        if f"instance-{server_id}" not in cluster.drivers[host].domains:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the original of {server_id} is still on {host}")


async def _last_fault(pool: asyncpg.Pool, server_id: str) -> str:
    message: str = await pool.fetchval(
        "SELECT message FROM server_faults WHERE server_id = $1 ORDER BY id DESC LIMIT 1",
        uuid.UUID(server_id),
    )
    return message


# --- a command the broker does not take --------------------------------------------------------


async def test_an_action_that_cannot_be_queued_is_taken_back_whole(
    api: ComputeClient, cluster: Cluster
) -> None:
    """The server's host has no queue (the broker refuses the command): 503, and the server,
    its images and its actions are as if the request had never come, but for the record."""
    server_id = await active_server(api, "unreachable", IMAGE, "1")
    real_host = await cluster.host_of(server_id)
    await hosts.heartbeat(
        cluster.pool,
        "ghost",
        HostCapacity(
            hypervisor_type="fake", hypervisor_uri="fake://", vcpus=1, ram_mb=1, disk_gb=1
        ),
    )
    await cluster.pool.execute("UPDATE compute_hosts SET enabled = false WHERE name = 'ghost'")
    await cluster.pool.execute(
        "UPDATE servers SET host = 'ghost' WHERE id = $1", uuid.UUID(server_id)
    )
    before = (await api.get(f"/servers/{server_id}")).body["server"]
    try:
        for body in (
            {"changePassword": {"adminPass": "x"}},
            {"reboot": {"type": "HARD"}},
            {"rebuild": {"imageRef": IMAGE, "name": "renamed", "metadata": {"new": "1"}}},
            {"createImage": {"name": "never"}},
        ):
            reply = await act(api, server_id, body)
            assert (reply.status, next(iter(reply.body))) == (503, "serviceUnavailable"), body
        after = (await api.get(f"/servers/{server_id}")).body["server"]
        assert {k: v for k, v in after.items() if k != "updated"} == {
            k: v for k, v in before.items() if k != "updated"
        }
        assert (
            await cluster.pool.fetchval(
                "SELECT count(*) FROM images WHERE server_id = $1", uuid.UUID(server_id)
            )
            == 0
        )
        assert [r for _, r in await actions_of(cluster.pool, server_id)] == [
            "success",
            "error",
            "error",
            "error",
            "error",
        ]
    finally:
        await cluster.pool.execute(
            "UPDATE servers SET host = $2 WHERE id = $1", uuid.UUID(server_id), real_host
        )
    await api.delete_and_wait(server_id)
    await cluster.pool.execute("DELETE FROM compute_hosts WHERE name = 'ghost'")
