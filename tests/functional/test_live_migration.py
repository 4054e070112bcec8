"""os-migrateLive on a system of several hosts in one process: a running server moves to the
host an administrator names, with its resources, and every failure leaves it running
somewhere, accounted exactly where it is.

Most tests run on the fake hypervisor, which moves a server itself as a real one does, and
can be told to be slow (``hold``) or to fail (``fail_next``). The last ones run on libvirt's
test hypervisor, one per host (``test:///<node file>``), which cannot migrate: the source
hands the domain's definition over and the destination defines and starts it.

The systems here are this module's own (their own databases): their hosts' usage is exactly
what the tests make it, and every test leaves the hosts idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from api_gateway.app import create_app
from api_gateway.compute.specs import instance_spec
from compute_agent.virt.driver import ComputeDriver
from compute_agent.virt.fake import FakeDriver
from compute_agent.virt.libvirt import mock_nodes
from conductor.reports import Reports
from shared import bus as bus_mod
from shared.db import actions, servers
from shared.db import live_migrations as live_db
from shared.messages import CommandReport, LiveMigrateServer
from shared.states import PowerState
from stratus.system import System
from tests import conftest
from tests.conftest import IMAGE
from tests.support.actions import (
    FLAVORS,
    act,
    act_xml,
    actions_of,
    active_server,
    host_usage,
    server_row,
    wait_until_action_done,
)
from tests.support.brokers import RefusingBroker
from tests.support.client import ComputeClient, Reply
from tests.support.databases import fresh_database
from tests.support.missing import LIBVIRT_BINDING

#: where servers are built (the scheduler's choice between them)
HOSTS = ("lm-a", "lm-b")
#: no disk at all: a server goes there only when the request allows disk over-commit
THIN = "lm-thin"
#: room for one m1.tiny (512 MB of RAM, 768 with the over-commit), and no disk
ONE = "lm-one"
IDLE = (0, 0, 0)


@dataclass
class Cluster:
    system: System
    drivers: dict[str, ComputeDriver]

    @property
    def pool(self) -> asyncpg.Pool:
        assert self.system.pool is not None
        return self.system.pool

    def fake(self, host: str) -> FakeDriver:
        driver = self.drivers[host]
        assert isinstance(driver, FakeDriver)
        return driver

    async def host_of(self, server_id: str) -> str:
        host: str = (await server_row(self.pool, server_id))["host"]
        return host

    async def usage(self) -> dict[str, tuple[int, int, int]]:
        return {host: await host_usage(self.pool, host) for host in self.drivers}

    async def domains(self) -> dict[str, list[str]]:
        return {host: await d.list_instances() for host, d in self.drivers.items()}


async def _start(tmp: Path, url: str, drivers: dict[str, ComputeDriver]) -> System:
    system = System(conftest.test_settings(tmp), url, dict(drivers))
    await system.start()
    return system


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    drivers: dict[str, ComputeDriver] = {
        host: FakeDriver(vcpus=16, ram_mb=8192, disk_gb=500) for host in HOSTS
    }
    drivers[THIN] = FakeDriver(vcpus=16, ram_mb=8192, disk_gb=0)
    drivers[ONE] = FakeDriver(vcpus=1, ram_mb=512, disk_gb=0)
    async with fresh_database() as url:
        system = await _start(tmp_path_factory.mktemp("live-fake"), url, drivers)
        try:
            yield Cluster(system, drivers)
        finally:
            await system.stop()


@pytest.fixture
def api(cluster: Cluster, http: aiohttp.ClientSession, tenant: str) -> ComputeClient:
    """The project's member, who owns the servers."""
    return ComputeClient(http, cluster.system.url, tenant, "alice")


@pytest.fixture
def admin(cluster: Cluster, http: aiohttp.ClientSession, tenant: str) -> ComputeClient:
    """An administrator, in the same project's URLs."""
    return ComputeClient(http, cluster.system.url, tenant, "admin")


@pytest.fixture(autouse=True)
async def _hosts_end_idle(cluster: Cluster) -> AsyncIterator[None]:
    """Every test deletes what it made: the hosts hold nothing before and after."""
    assert await cluster.usage() == {host: IDLE for host in cluster.drivers}
    yield
    assert await cluster.usage() == {host: IDLE for host in cluster.drivers}
    await _until(lambda: _all_empty(cluster), "the hypervisors are empty")


async def _all_empty(cluster: Cluster) -> bool:
    return all(not names for names in (await cluster.domains()).values())


async def _until(condition: Any, what: str, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"never: {what}")
        await asyncio.sleep(0.05)


def _body(host: str, *, block: bool = False, over_commit: bool = False) -> dict[str, Any]:
    return {
        "os-migrateLive": {
            "host": host,
            "block_migration": block,
            "disk_over_commit": over_commit,
        }
    }


async def _migrate(admin: ComputeClient, server_id: str, host: str, **options: bool) -> Reply:
    return await act(admin, server_id, _body(host, **options))


def _fault(reply: Reply) -> tuple[int, str, str]:
    ((name, fault),) = reply.body.items()
    return reply.status, name, fault["message"]


async def _other(cluster: Cluster, server_id: str) -> tuple[str, str]:
    source = await cluster.host_of(server_id)
    return source, next(h for h in HOSTS if h != source)


async def _migration(cluster: Cluster, server_id: str) -> asyncpg.Record:
    row = await cluster.pool.fetchrow(
        "SELECT * FROM migrations WHERE server_id = $1 ORDER BY created_at DESC LIMIT 1",
        uuid.UUID(server_id),
    )
    assert row is not None
    return row


async def _faults(cluster: Cluster, server_id: str) -> list[str]:
    rows = await cluster.pool.fetch(
        "SELECT message FROM server_faults WHERE server_id = $1 ORDER BY id",
        uuid.UUID(server_id),
    )
    return [r["message"] for r in rows]


# --- the journey -----------------------------------------------------------------------------


async def test_a_running_server_moves_to_the_named_host_with_its_resources(
    api: ComputeClient, admin: ComputeClient, cluster: Cluster
) -> None:
    server_id = await active_server(api, "traveller", IMAGE, "2")
    source, dest = await _other(cluster, server_id)
    before = (await api.get(f"/servers/{server_id}")).body["server"]
    name = f"instance-{server_id}"

    release = cluster.fake(source).hold("live_migrate")
    assert (await _migrate(admin, server_id, dest)).status == 202
    migrating = await api.wait_for_status(server_id, "MIGRATING", timeout_s=10)
    await _until(lambda: _status_is(cluster, server_id, "running"), "the source migrates")
    # the server keeps running where it is; the destination's room is claimed already
    assert migrating["hostId"] == before["hostId"]
    assert (await server_row(cluster.pool, server_id))["power_state"] == PowerState.RUNNING
    assert cluster.fake(source).domains[name].power is PowerState.RUNNING
    assert await cluster.usage() == {
        **{h: IDLE for h in cluster.drivers},
        source: FLAVORS["2"],
        dest: FLAVORS["2"],
    }
    # one thing at a time
    again = await _migrate(admin, server_id, dest)
    assert _fault(again)[:2] == (409, "conflictingRequest")
    release.set()

    moved = await api.wait_for_status(server_id, "ACTIVE")
    await wait_until_action_done(cluster.pool, server_id)
    assert await cluster.host_of(server_id) == dest
    assert moved["hostId"] != before["hostId"]
    assert (moved["addresses"], moved["flavor"]) == (before["addresses"], before["flavor"])
    assert await cluster.usage() == {**{h: IDLE for h in cluster.drivers}, dest: FLAVORS["2"]}
    assert name not in cluster.fake(source).domains
    domain = cluster.fake(dest).domains[name]
    assert (domain.power, domain.boots) == (PowerState.RUNNING, 1)  # never restarted
    assert await actions_of(cluster.pool, server_id) == [
        ("create", "success"),
        ("os-migrateLive", "success"),
    ]
    record = await _migration(cluster, server_id)
    assert (record["kind"], record["status"], record["held"]) == (
        "live-migration",
        "confirmed",
        None,
    )
    assert (record["source_host"], record["dest_host"]) == (source, dest)
    await api.delete_and_wait(server_id)


async def test_the_xml_form_s_false_is_false_and_true_is_true(
    api: ComputeClient, admin: ComputeClient, cluster: Cluster
) -> None:
    server_id = await active_server(api, "xml", IMAGE)
    for block, expected in (("false", False), ("true", True)):
        _, dest = await _other(cluster, server_id)
        reply = await act_xml(
            admin,
            server_id,
            f"""<?xml version="1.0" encoding="UTF-8" ?>
    <os-migrateLive>
        <host>{dest}</host>
        <block_migration>{block}</block_migration>
        <disk_over_commit>false</disk_over_commit>
    </os-migrateLive>""",
        )
        assert reply.status == 202, reply
        await wait_until_action_done(cluster.pool, server_id)
        record = await _migration(cluster, server_id)
        assert (record["block_migration"], record["disk_over_commit"]) == (expected, False)
        assert (record["status"], await cluster.host_of(server_id)) == ("confirmed", dest)
    await api.delete_and_wait(server_id)


# --- without a host: the scheduler picks (nova 2013.2) ---------------------------------------

#: what ``nova live-migration SERVER`` and openstacksdk send
_NO_HOST = {"os-migrateLive": {"host": None, "block_migration": False, "disk_over_commit": False}}
NO_VALID_HOST = "No valid host was found. There are not enough hosts available."


async def test_without_a_host_the_scheduler_picks_the_other_host(
    api: ComputeClient, admin: ComputeClient, cluster: Cluster
) -> None:
    """Of the four hosts only the other of HOSTS has disk for the server: it is picked; in
    XML, a body with no ``<host>`` brings the server back."""
    server_id = await active_server(api, "anywhere", IMAGE, "2")
    source, dest = await _other(cluster, server_id)
    assert (await act(admin, server_id, _NO_HOST)).status == 202
    await wait_until_action_done(cluster.pool, server_id)
    assert await cluster.host_of(server_id) == dest
    record = await _migration(cluster, server_id)
    assert (record["status"], record["source_host"], record["dest_host"]) == (
        "confirmed",
        source,
        dest,
    )
    assert await cluster.usage() == {**{h: IDLE for h in cluster.drivers}, dest: FLAVORS["2"]}
    assert cluster.fake(dest).domains[f"instance-{server_id}"].power is PowerState.RUNNING

    reply = await act_xml(
        admin,
        server_id,
        """<?xml version="1.0" encoding="UTF-8" ?>
    <os-migrateLive>
        <block_migration>false</block_migration>
        <disk_over_commit>false</disk_over_commit>
    </os-migrateLive>""",
    )
    assert reply.status == 202, reply
    await wait_until_action_done(cluster.pool, server_id)
    assert await cluster.host_of(server_id) == source
    assert await actions_of(cluster.pool, server_id) == [
        ("create", "success"),
        ("os-migrateLive", "success"),
        ("os-migrateLive", "success"),
    ]
    await api.delete_and_wait(server_id)


async def test_without_a_host_and_no_other_host_that_fits_it_is_400_no_valid_host(
    api: ComputeClient, admin: ComputeClient, cluster: Cluster
) -> None:
    server_id = await active_server(api, "nowhere", IMAGE)
    source, dest = await _other(cluster, server_id)
    await cluster.pool.execute("UPDATE compute_hosts SET enabled = false WHERE name = $1", dest)
    try:
        refused = _fault(await act(admin, server_id, _NO_HOST))
    finally:
        await cluster.pool.execute("UPDATE compute_hosts SET enabled = true WHERE name = $1", dest)
    # the thin hosts have no disk for it; disk over-commit lets the scheduler use them
    assert refused == (400, "badRequest", NO_VALID_HOST)
    assert await actions_of(cluster.pool, server_id) == [("create", "success")]
    assert await cluster.host_of(server_id) == source
    assert (await api.get(f"/servers/{server_id}")).body["server"]["status"] == "ACTIVE"
    await api.delete_and_wait(server_id)


async def test_without_a_host_the_conductor_fails_the_action_when_none_fits_any_more(
    api: ComputeClient, cluster: Cluster
) -> None:
    """A live migration without a host the gateway accepted, when by the time the conductor
    schedules it no other host has room: sent here as the gateway sends it."""
    server_id = await active_server(api, "late-nowhere", IMAGE)
    source, dest = await _other(cluster, server_id)
    sid, migration_id, action_id = uuid.UUID(server_id), uuid.uuid4(), uuid.uuid4()
    async with cluster.pool.acquire() as conn, conn.transaction():
        server = await servers.get(conn, sid, None)
        assert server is not None
        await actions.record(
            conn,
            action_id=action_id,
            request_id="req-late-nowhere",
            server_id=sid,
            action="os-migrateLive",
            tenant_id=api.tenant,
            user_id="admin",
        )
        await servers.set_task(conn, sid, "migrating")
        await live_db.insert(
            conn,
            live_db.NewLiveMigration(
                id=migration_id,
                server_id=sid,
                action_id=action_id,
                source_host=source,
                dest_host=None,
                instance=await instance_spec(conn, server),
                block_migration=False,
                disk_over_commit=False,
            ),
        )
    assert cluster.system.bus is not None
    await cluster.pool.execute("UPDATE compute_hosts SET enabled = false WHERE name = $1", dest)
    try:
        await cluster.system.bus.publish(
            bus_mod.CONDUCTOR,
            LiveMigrateServer(server_id=sid, action_id=action_id, migration_id=migration_id),
        )
        await wait_until_action_done(cluster.pool, server_id)
    finally:
        await cluster.pool.execute("UPDATE compute_hosts SET enabled = true WHERE name = $1", dest)
    assert (await api.get(f"/servers/{server_id}")).body["server"]["status"] == "ACTIVE"
    assert await cluster.host_of(server_id) == source
    assert (await actions_of(cluster.pool, server_id))[-1] == ("os-migrateLive", "error")
    fault = await cluster.pool.fetchrow(
        "SELECT code, message FROM server_faults WHERE server_id = $1", sid
    )
    assert fault is not None and (fault["code"], fault["message"]) == (400, NO_VALID_HOST)
    record = await _migration(cluster, server_id)
    assert (record["status"], record["dest_host"], record["held"]) == ("error", None, None)
    await api.delete_and_wait(server_id)


# --- what is refused at once -----------------------------------------------------------------


async def test_only_an_administrator_may_live_migrate(api: ComputeClient, cluster: Cluster) -> None:
    server_id = await active_server(api, "mine", IMAGE)
    _, dest = await _other(cluster, server_id)
    for body in (_body(dest), {"os-migrateLive": None}):
        refused = await act(api, server_id, body)
        assert _fault(refused)[:2] == (403, "forbidden")
    assert await actions_of(cluster.pool, server_id) == [("create", "success")]
    await api.delete_and_wait(server_id)


async def test_a_bad_request_or_an_unusable_destination_is_400_and_changes_nothing(
    api: ComputeClient, admin: ComputeClient, cluster: Cluster
) -> None:
    server_id = await active_server(api, "stay", IMAGE)
    source, dest = await _other(cluster, server_id)
    missing = "host and block_migration must be specified."
    cases: list[tuple[dict[str, Any], str]] = [
        ({"os-migrateLive": {"host": dest, "block_migration": False}}, missing),
        ({"os-migrateLive": {"host": dest, "disk_over_commit": False}}, missing),
        ({"os-migrateLive": {"host": "", "block_migration": False}}, missing),
        ({"os-migrateLive": None}, missing),
        (
            {
                "os-migrateLive": {
                    "host": dest,
                    "block_migration": "maybe",
                    "disk_over_commit": False,
                }
            },
            "block_migration",
        ),
        (_body("no-such-host"), "Compute host no-such-host could not be found."),
        (_body(source), f"Unable to migrate instance ({server_id}) to current host ({source})."),
        (_body(THIN), f"Host {THIN} does not have room for the server"),
    ]
    for body, message in cases:
        status, name, text = _fault(await act(admin, server_id, body))
        assert (status, name) == (400, "badRequest"), (body, text)
        assert message in text, (body, text)

    await cluster.pool.execute("UPDATE compute_hosts SET enabled = false WHERE name = $1", dest)
    try:
        disabled = _fault(await _migrate(admin, server_id, dest))
    finally:
        await cluster.pool.execute("UPDATE compute_hosts SET enabled = true WHERE name = $1", dest)
    assert disabled == (
        400,
        "badRequest",
        f"Compute service of {dest} is unavailable at this time.",
    )

    # a host of another hypervisor (registered, never heartbeating again)
    await cluster.pool.execute(
        """INSERT INTO compute_hosts (name, hypervisor_type, hypervisor_uri, vcpus, ram_mb,
                                      disk_gb, last_heartbeat)
           VALUES ('lm-qemu', 'qemu', 'qemu:///system', 1, 1, 0, now())"""
    )
    try:
        other_kind = _fault(await _migrate(admin, server_id, "lm-qemu"))
    finally:
        await cluster.pool.execute("DELETE FROM compute_hosts WHERE name = 'lm-qemu'")
    assert other_kind[:2] == (400, "badRequest")
    assert "its hypervisor (qemu) is not the source's (fake)" in other_kind[2]

    assert (await _migrate(admin, str(uuid.uuid4()), dest)).status == 404
    assert await actions_of(cluster.pool, server_id) == [("create", "success")]
    assert await cluster.host_of(server_id) == source
    assert (await api.get(f"/servers/{server_id}")).body["server"]["status"] == "ACTIVE"
    await api.delete_and_wait(server_id)


async def test_disk_over_commit_skips_only_the_disk_check(
    api: ComputeClient, admin: ComputeClient, cluster: Cluster
) -> None:
    server_id = await active_server(api, "thin", IMAGE)
    refused = _fault(await _migrate(admin, server_id, THIN, over_commit=False))
    assert refused[:2] == (400, "badRequest")
    assert (await _migrate(admin, server_id, THIN, over_commit=True)).status == 202
    await wait_until_action_done(cluster.pool, server_id)
    assert await cluster.host_of(server_id) == THIN
    assert await host_usage(cluster.pool, THIN) == FLAVORS["1"]  # 1 GB on a host of 0
    await api.delete_and_wait(server_id)


async def test_two_servers_racing_for_the_last_room_cannot_both_get_it(
    api: ComputeClient, admin: ComputeClient, cluster: Cluster
) -> None:
    ids = [await active_server(api, f"racer{i}", IMAGE) for i in range(2)]
    replies = await asyncio.gather(
        *(_migrate(admin, server_id, ONE, over_commit=True) for server_id in ids)
    )
    for server_id in ids:
        await wait_until_action_done(cluster.pool, server_id)
    on_one = [s for s in ids if await cluster.host_of(s) == ONE]
    assert len(on_one) == 1, [r.status for r in replies]
    assert await host_usage(cluster.pool, ONE) == FLAVORS["1"]
    (loser,) = set(ids) - set(on_one)
    loser_reply = replies[ids.index(loser)]
    if loser_reply.status == 202:  # the conductor's claim refused it: a fault says why
        assert (await actions_of(cluster.pool, loser))[-1] == ("os-migrateLive", "error")
        assert f"Host {ONE} does not have room" in (await _faults(cluster, loser))[-1]
    else:  # the gateway saw the host full already
        assert _fault(loser_reply)[:2] == (400, "badRequest")
    for server_id in ids:
        await api.delete_and_wait(server_id)


async def test_the_conductor_refuses_a_destination_that_is_full_when_it_claims(
    api: ComputeClient, cluster: Cluster
) -> None:
    """A live migration the gateway accepted, whose destination has no room any more by the
    time the conductor claims it: sent here as the gateway sends it."""
    server_id = await active_server(api, "late", IMAGE)
    source = await cluster.host_of(server_id)
    sid, migration_id, action_id = uuid.UUID(server_id), uuid.uuid4(), uuid.uuid4()
    async with cluster.pool.acquire() as conn, conn.transaction():
        server = await servers.get(conn, sid, None)
        assert server is not None
        await actions.record(
            conn,
            action_id=action_id,
            request_id="req-late",
            server_id=sid,
            action="os-migrateLive",
            tenant_id=api.tenant,
            user_id="admin",
        )
        await servers.set_task(conn, sid, "migrating")
        await live_db.insert(
            conn,
            live_db.NewLiveMigration(
                id=migration_id,
                server_id=sid,
                action_id=action_id,
                source_host=source,
                dest_host=THIN,
                instance=await instance_spec(conn, server),
                block_migration=False,
                disk_over_commit=False,
            ),
        )
    assert cluster.system.bus is not None
    await cluster.system.bus.publish(
        bus_mod.CONDUCTOR,
        LiveMigrateServer(server_id=sid, action_id=action_id, migration_id=migration_id),
    )
    await wait_until_action_done(cluster.pool, server_id)
    assert (await api.get(f"/servers/{server_id}")).body["server"]["status"] == "ACTIVE"
    assert await cluster.host_of(server_id) == source
    fault = await cluster.pool.fetchrow(
        "SELECT code, message FROM server_faults WHERE server_id = $1", sid
    )
    assert fault is not None and fault["code"] == 400
    assert fault["message"].startswith(f"Host {THIN} does not have room")
    assert (await _migration(cluster, server_id))["status"] == "error"
    await api.delete_and_wait(server_id)


async def test_a_live_migration_that_cannot_be_queued_is_taken_back(
    api: ComputeClient, cluster: Cluster, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    server_id = await active_server(api, "unsent", IMAGE)
    _, dest = await _other(cluster, server_id)
    assert cluster.system.bus is not None
    app = create_app(
        conftest.test_settings(tmp_path),
        pool=cluster.pool,
        bus=RefusingBroker(cluster.system.bus).as_bus(),
    )
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        host, port = runner.addresses[0][:2]
        admin = ComputeClient(http, f"http://{host}:{port}", api.tenant, "admin")
        refused = await _migrate(admin, server_id, dest)
    finally:
        await runner.cleanup()
    assert _fault(refused)[:2] == (503, "serviceUnavailable")
    row = await server_row(cluster.pool, server_id)
    assert (row["vm_state"], row["task_state"]) == ("active", None)
    assert (await actions_of(cluster.pool, server_id))[-1] == ("os-migrateLive", "error")
    recorded = await cluster.pool.fetchval(
        "SELECT count(*) FROM migrations WHERE server_id = $1", uuid.UUID(server_id)
    )
    assert recorded == 0
    assert await cluster.usage() == {
        **{h: IDLE for h in cluster.drivers},
        await cluster.host_of(server_id): FLAVORS["1"],
    }
    await api.delete_and_wait(server_id)


# --- failures on the hosts -------------------------------------------------------------------


async def _failed_migration(
    api: ComputeClient, admin: ComputeClient, cluster: Cluster, fail: tuple[str, str]
) -> tuple[str, str, str]:
    """A server, live-migrated while ``fail`` = (side, operation) fails on that side."""
    server_id = await active_server(api, "unlucky", IMAGE)
    source, dest = await _other(cluster, server_id)
    side, operation = fail
    cluster.fake(source if side == "source" else dest).fail_next(operation, f"{operation} broke")
    assert (await _migrate(admin, server_id, dest)).status == 202
    await wait_until_action_done(cluster.pool, server_id)
    return server_id, source, dest


async def test_a_destination_that_cannot_prepare_leaves_the_server_where_it_was(
    api: ComputeClient, admin: ComputeClient, cluster: Cluster
) -> None:
    server_id, source, _ = await _failed_migration(
        api, admin, cluster, ("dest", "prepare_live_migration")
    )
    assert (await api.get(f"/servers/{server_id}")).body["server"]["status"] == "ACTIVE"
    assert await cluster.host_of(server_id) == source
    assert await cluster.usage() == {**{h: IDLE for h in cluster.drivers}, source: FLAVORS["1"]}
    assert await _faults(cluster, server_id) == ["prepare_live_migration broke"]
    assert (await actions_of(cluster.pool, server_id))[-1] == ("os-migrateLive", "error")
    assert (await _migration(cluster, server_id))["status"] == "error"
    await api.delete_and_wait(server_id)


async def test_a_failed_migration_is_rolled_back_and_the_server_runs_on(
    api: ComputeClient, admin: ComputeClient, cluster: Cluster
) -> None:
    server_id = await active_server(api, "rolled", IMAGE)
    source, dest = await _other(cluster, server_id)
    cluster.fake(source).fail_next("live_migrate", "the network went away")
    rollback = cluster.fake(dest).hold("roll_back_live_migration")
    assert (await _migrate(admin, server_id, dest)).status == 202

    # the source recovers first; the destination keeps its claim until it has cleaned up
    await _until(
        lambda: _status_is(cluster, server_id, "rolling-back"), "the destination rolls back"
    )
    assert f"instance-{server_id}" in cluster.fake(dest).arriving
    assert await host_usage(cluster.pool, dest) == FLAVORS["1"]
    assert (await api.get(f"/servers/{server_id}")).body["server"]["status"] == "MIGRATING"
    rollback.set()

    await wait_until_action_done(cluster.pool, server_id)
    assert (await api.get(f"/servers/{server_id}")).body["server"]["status"] == "ACTIVE"
    assert await cluster.host_of(server_id) == source
    assert cluster.fake(dest).arriving == set()
    assert cluster.fake(source).domains[f"instance-{server_id}"].power is PowerState.RUNNING
    assert await cluster.usage() == {**{h: IDLE for h in cluster.drivers}, source: FLAVORS["1"]}
    assert await _faults(cluster, server_id) == ["the network went away"]
    assert (await actions_of(cluster.pool, server_id))[-1] == ("os-migrateLive", "error")
    await api.delete_and_wait(server_id)


async def _status_is(cluster: Cluster, server_id: str, status: str) -> bool:
    return bool((await _migration(cluster, server_id))["status"] == status)


async def test_a_server_the_destination_cannot_confirm_is_never_destroyed(
    api: ComputeClient, admin: ComputeClient, cluster: Cluster
) -> None:
    """The hypervisor moved it, but the destination cannot confirm it runs: the source does
    not have it any more, so it is in ERROR, accounted on the destination, and kept."""
    server_id, source, dest = await _failed_migration(
        api, admin, cluster, ("dest", "finish_live_migration")
    )
    lost = f"server instance-{server_id} is not on host {source}"
    server = (await api.get(f"/servers/{server_id}")).body["server"]
    assert (server["status"], server["fault"]["message"]) == ("ERROR", lost)
    assert await cluster.host_of(server_id) == dest
    assert f"instance-{server_id}" in cluster.fake(dest).domains
    assert await cluster.usage() == {**{h: IDLE for h in cluster.drivers}, dest: FLAVORS["1"]}
    assert await _faults(cluster, server_id) == ["finish_live_migration broke", lost]
    await api.delete_and_wait(server_id)  # destroyed where it is accounted


async def test_a_source_that_cannot_clean_up_does_not_undo_the_migration(
    api: ComputeClient, admin: ComputeClient, cluster: Cluster
) -> None:
    server_id, source, dest = await _failed_migration(
        api, admin, cluster, ("source", "clean_up_live_migration")
    )
    assert (await api.get(f"/servers/{server_id}")).body["server"]["status"] == "ACTIVE"
    assert await cluster.host_of(server_id) == dest
    assert await cluster.usage() == {**{h: IDLE for h in cluster.drivers}, dest: FLAVORS["1"]}
    assert await _faults(cluster, server_id) == ["clean_up_live_migration broke"]
    result = await cluster.pool.fetchrow(
        "SELECT result, message FROM actions WHERE server_id = $1 AND action = 'os-migrateLive'",
        uuid.UUID(server_id),
    )
    assert result is not None and result["result"] == "success"
    assert f"{source} could not clean up" in result["message"]
    await api.delete_and_wait(server_id)


async def test_deleting_a_migrating_server_leaves_nothing_on_either_host(
    api: ComputeClient, admin: ComputeClient, cluster: Cluster
) -> None:
    server_id = await active_server(api, "doomed", IMAGE)
    source, dest = await _other(cluster, server_id)
    release = cluster.fake(source).hold("live_migrate")
    assert (await _migrate(admin, server_id, dest)).status == 202
    await _until(lambda: _status_is(cluster, server_id, "running"), "the source migrates")
    assert (await api.delete(f"/servers/{server_id}")).status == 204
    # the migration goes on (the host runs one command of a server at a time): the server
    # arrives on the destination, which is told to destroy it; the source's destroy then
    # finds nothing
    release.set()
    await api.wait_for_status(server_id, "DELETED")
    # the hosts idle and empty: checked as every test ends


async def test_a_live_migration_ended_by_os_reset_state_leaves_no_claim_behind(
    api: ComputeClient, admin: ComputeClient, cluster: Cluster
) -> None:
    server_id = await active_server(api, "reset", IMAGE)
    _, dest = await _other(cluster, server_id)
    release = cluster.fake(dest).hold("prepare_live_migration")
    assert (await _migrate(admin, server_id, dest)).status == 202
    await _until(lambda: _status_is(cluster, server_id, "preparing"), "the destination prepares")
    stale = (await _migration(cluster, server_id))["id"]
    assert await host_usage(cluster.pool, dest) == FLAVORS["1"]  # claimed for the migration

    reset = await act(admin, server_id, {"os-resetState": {"state": "active"}})
    assert reset.status == 202, reset
    # the next live migration ends the interrupted one first, and its claim with it
    assert (await _migrate(admin, server_id, dest)).status == 202
    release.set()
    await wait_until_action_done(cluster.pool, server_id)

    assert (await api.get(f"/servers/{server_id}")).body["server"]["status"] == "ACTIVE"
    assert await cluster.host_of(server_id) == dest
    assert await cluster.usage() == {**{h: IDLE for h in cluster.drivers}, dest: FLAVORS["1"]}
    statuses = await cluster.pool.fetch(
        "SELECT id, status, held FROM migrations WHERE server_id = $1", uuid.UUID(server_id)
    )
    assert {(r["id"] == stale, r["status"], r["held"]) for r in statuses} == {
        (True, "error", None),
        (False, "confirmed", None),
    }
    await api.delete_and_wait(server_id)


async def _echo(cluster: Cluster, server_id: str, reports: list[tuple[str, str, bool]]) -> None:
    """Send ``reports`` (step's command, host, success) again, as a redelivery would: none
    applies, and nothing changes."""
    record = await _migration(cluster, server_id)
    before = await server_row(cluster.pool, server_id)
    usage = await cluster.usage()
    assert cluster.system.bus is not None
    for command, host, success in reports:
        applied = await Reports(cluster.pool, cluster.system.bus).apply(
            CommandReport(
                server_id=uuid.UUID(server_id),
                action_id=record["action_id"],
                migration_id=record["id"],
                command=command,
                task_state="migrating",
                host=host,
                success=success,
                power_state=PowerState.NOSTATE,
            ),
        )
        assert applied is False, (command, host, success)
    after = await server_row(cluster.pool, server_id)
    assert after["version"] == before["version"]
    assert await cluster.usage() == usage
    assert (await _migration(cluster, server_id))["status"] == record["status"]


async def test_repeated_or_misdirected_reports_change_nothing(
    api: ComputeClient, admin: ComputeClient, cluster: Cluster
) -> None:
    server_id = await active_server(api, "echo", IMAGE)
    source, dest = await _other(cluster, server_id)
    release = cluster.fake(dest).hold("finish_live_migration")
    assert (await _migrate(admin, server_id, dest)).status == 202
    await _until(lambda: _status_is(cluster, server_id, "arriving"), "the migration is done")
    # while the destination confirms: earlier steps again, its own step from the wrong host
    await _echo(
        cluster,
        server_id,
        [
            ("prepare_live_migration", dest, True),
            ("live_migrate", source, True),
            ("live_migrate", source, False),
            ("finish_live_migration", source, True),
            ("recover_live_migration", source, True),
        ],
    )
    release.set()
    await wait_until_action_done(cluster.pool, server_id)
    # and every step once it is over
    await _echo(
        cluster,
        server_id,
        [
            (step, host, success)
            for step, host in (
                ("prepare_live_migration", dest),
                ("live_migrate", source),
                ("finish_live_migration", dest),
                ("clean_up_live_migration", source),
                ("recover_live_migration", source),
                ("roll_back_live_migration", dest),
            )
            for success in (True, False)
        ],
    )
    assert await cluster.host_of(server_id) == dest
    await api.delete_and_wait(server_id)


# --- on libvirt's test hypervisor, one per host ----------------------------------------------

LIBVIRT_HOSTS = ("lv-a", "lv-b")


@contextlib.contextmanager
def _unreachable(uri: str) -> Iterator[None]:
    """New connections to the test hypervisor at ``uri`` fail (its node file is gone) while
    its own agent's connection goes on working."""
    node = Path(uri.removeprefix("test://"))
    saved = node.read_text()
    node.unlink()
    try:
        yield
    finally:
        node.write_text(saved)


@pytest.fixture(scope="module")
async def libvirt_cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    pytest.importorskip("libvirt", reason=LIBVIRT_BINDING)
    from compute_agent.virt.libvirt.driver import LibvirtDriver

    tmp = tmp_path_factory.mktemp("live-libvirt")
    drivers: dict[str, ComputeDriver] = {
        host: LibvirtDriver(
            mock_nodes.node_uri(tmp / "hypervisors", host),
            tmp / "instances",
            vcpus=16,
            ram_mb=8192,
            disk_gb=500,
        )
        for host in LIBVIRT_HOSTS
    }
    async with fresh_database() as url:
        system = await _start(tmp, url, drivers)
        try:
            yield Cluster(system, drivers)
        finally:
            await system.stop()


async def test_on_the_test_hypervisor_the_domain_is_handed_to_the_other_host(
    libvirt_cluster: Cluster, http: aiohttp.ClientSession, tenant: str
) -> None:
    cluster = libvirt_cluster
    api = ComputeClient(http, cluster.system.url, tenant, "alice")
    admin = ComputeClient(http, cluster.system.url, tenant, "admin")
    server_id = await active_server(api, "handed", IMAGE, "2")
    source = await cluster.host_of(server_id)
    dest = next(h for h in LIBVIRT_HOSTS if h != source)
    name = f"instance-{server_id}"
    assert await cluster.domains() == {source: [name], dest: []}

    assert (await _migrate(admin, server_id, dest, block=True)).status == 202
    await wait_until_action_done(cluster.pool, server_id)
    assert (await api.get(f"/servers/{server_id}")).body["server"]["status"] == "ACTIVE"
    assert await cluster.host_of(server_id) == dest
    assert await cluster.domains() == {source: [], dest: [name]}
    assert await cluster.drivers[dest].power_state(name) is PowerState.RUNNING
    assert await cluster.usage() == {source: IDLE, dest: FLAVORS["2"]}

    # the destination's hypervisor stops answering: the migration back fails, rolled back
    with _unreachable((await cluster.drivers[source].capacity()).hypervisor_uri):
        assert (await _migrate(admin, server_id, source)).status == 202
        await wait_until_action_done(cluster.pool, server_id)
    assert (await api.get(f"/servers/{server_id}")).body["server"]["status"] == "ACTIVE"
    assert await cluster.host_of(server_id) == dest
    assert await cluster.domains() == {source: [], dest: [name]}
    assert await cluster.usage() == {source: IDLE, dest: FLAVORS["2"]}
    assert "cannot reach the destination's hypervisor" in (await _faults(cluster, server_id))[-1]

    await api.delete_and_wait(server_id)
    assert await cluster.usage() == {source: IDLE, dest: IDLE}
    assert await cluster.domains() == {source: [], dest: []}
