"""os-hosts and os-migrations (administrators), on two hosts of the fake hypervisor with a
database of their own: what each host holds, taking a host out of scheduling, and the record
of every migration."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import IMAGE
from tests.support.actions import act, active_server
from tests.support.client import ComputeClient
from tests.support.cluster import Cluster, fake_cluster

#: the members of a migration in nova's os-migrations (and nothing else: clients' schemas
#: refuse more)
MIGRATION_KEYS = {
    "id",
    "status",
    "instance_uuid",
    "source_node",
    "source_compute",
    "dest_node",
    "dest_compute",
    "dest_host",
    "old_instance_type_id",
    "new_instance_type_id",
    "created_at",
    "updated_at",
}


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    tmp: Path = tmp_path_factory.mktemp("hosts-cluster")
    async with fake_cluster(tmp, ("north", "south")) as the_cluster:
        yield the_cluster


@pytest.fixture
def admin(cluster: Cluster, http: aiohttp.ClientSession, tenant: str) -> ComputeClient:
    return ComputeClient(http, cluster.system.url, tenant, "admin")


@pytest.fixture
def member(cluster: Cluster, http: aiohttp.ClientSession, tenant: str) -> ComputeClient:
    return ComputeClient(http, cluster.system.url, tenant, "alice")


async def test_hosts_are_listed_for_administrators_only(
    admin: ComputeClient, member: ComputeClient
) -> None:
    reply = await admin.get("/os-hosts")
    assert reply.body == {
        "hosts": [
            {"host_name": "north", "service": "compute", "zone": "nova"},
            {"host_name": "south", "service": "compute", "zone": "nova"},
        ]
    }
    assert (await admin.get("/os-hosts?zone=elsewhere")).body == {"hosts": []}
    for path in ("/os-hosts", "/os-hosts/north", "/os-migrations"):
        assert (await member.get(path)).status == 403, path
    assert (await member.request("PUT", "/os-hosts/north", {"status": "disable"})).status == 403


async def test_a_host_shows_what_it_holds_and_for_whom(
    admin: ComputeClient, member: ComputeClient, cluster: Cluster
) -> None:
    server_id = await active_server(member, "counted", IMAGE, flavor="2")
    host = await cluster.host_of(server_id)
    resources = [r["resource"] for r in (await admin.get(f"/os-hosts/{host}")).body["host"]]
    by_project = {r["project"]: (r["cpu"], r["memory_mb"], r["disk_gb"]) for r in resources}
    assert by_project["(total)"] == (16, 8192, 500)
    assert by_project["(used_now)"] == by_project["(used_max)"] == (1, 2048, 20)
    assert by_project[member.tenant] == (1, 2048, 20)
    assert {r["host"] for r in resources} == {host}
    await member.delete_and_wait(server_id)
    assert (await admin.get("/os-hosts/nowhere")).status == 404


async def test_a_disabled_host_gets_no_new_servers(
    admin: ComputeClient, member: ComputeClient
) -> None:
    reply = await admin.request("PUT", "/os-hosts/north", {"status": "disable"})
    assert reply.body == {"host": "north", "status": "disabled"}
    try:
        ids = [await active_server(member, f"s{i}", IMAGE) for i in range(3)]
        hosts = {
            (await admin.get(f"/servers/{i}")).body["server"]["OS-EXT-SRV-ATTR:host"] for i in ids
        }
        assert hosts == {"south"}
    finally:
        reply = await admin.request("PUT", "/os-hosts/north", {"status": "enable"})
        assert reply.body == {"host": "north", "status": "enabled"}
    for server_id in ids:
        await member.delete_and_wait(server_id)


async def test_what_a_host_cannot_do_is_501_and_bad_bodies_400(admin: ComputeClient) -> None:
    reply = await admin.request("PUT", "/os-hosts/north", {"maintenance_mode": "enable"})
    assert (reply.status, next(iter(reply.body))) == (501, "notImplemented")
    assert (await admin.request("PUT", "/os-hosts/north", {"status": "sideways"})).status == 400
    assert (await admin.request("PUT", "/os-hosts/nowhere", {"status": "enable"})).status == 404


async def test_migrations_are_listed_in_novas_shape(admin: ComputeClient, cluster: Cluster) -> None:
    server_id = await active_server(admin, "moved", IMAGE)
    source = await cluster.host_of(server_id)
    assert (await act(admin, server_id, {"migrate": None})).status == 202
    await admin.wait_for_status(server_id, "VERIFY_RESIZE")
    assert (await act(admin, server_id, {"confirmResize": None})).status == 204
    await admin.wait_for_status(server_id, "ACTIVE")
    reply = await admin.get(f"/os-migrations?instance_uuid={server_id}&unknown=1")
    (migration,) = reply.body["migrations"]
    assert set(migration) == MIGRATION_KEYS
    assert isinstance(migration["id"], int)
    assert (migration["source_compute"], migration["dest_compute"]) == (
        source,
        cluster.other(source),
    )
    assert (migration["old_instance_type_id"], migration["new_instance_type_id"]) == (1, 1)
    assert migration["status"] == "confirmed"
    by_host = (await admin.get(f"/os-migrations?host={source}")).body["migrations"]
    assert migration["id"] in [m["id"] for m in by_host]
    resizes = (await admin.get("/os-migrations?migration_type=resize")).body["migrations"]
    assert migration["id"] not in [m["id"] for m in resizes]
    assert (await admin.get("/os-migrations?instance_uuid=nope")).status == 400
    assert (await admin.get("/os-migrations?migration_type=teleport")).status == 400
    await admin.delete_and_wait(server_id)


async def test_the_extensions_are_listed(admin: ComputeClient) -> None:
    aliases = {e["alias"]: e["name"] for e in (await admin.get("/extensions")).body["extensions"]}
    assert {a: aliases.get(a) for a in ("os-hosts", "os-migrations", "os-flavor-extra-specs")} == {
        "os-hosts": "Hosts",
        "os-migrations": "Migrations",
        "os-flavor-extra-specs": "FlavorExtraSpecs",
    }
    assert (await admin.get("/extensions/os-no-such-extension")).status == 404
