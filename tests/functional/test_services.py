"""nova's os-services (administrators), on two hosts of the fake hypervisor with a database
of their own: the compute hosts listed as nova-compute services (with nova 2013.2's ``id`` and
``disabled_reason``, as tempest's v2.1 schemas want them), the filters, and taking a host out
of scheduling (with a reason or without) and back."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from shared.db import hosts, migrate
from shared.messages import HostCapacity
from tests.support.client import ComputeClient
from tests.support.cluster import Cluster, fake_cluster
from tests.support.databases import fresh_database

SAMPLES = Path(__file__).parent.parent / "samples" / "nova-2013.1" / "os-services"
XML = {"Accept": "application/xml"}
XML_BODY = {"Accept": "application/xml", "Content-Type": "application/xml"}
#: a service's members: nova 2013.1's, and the ``id`` and ``disabled_reason`` of 2013.2
MEMBERS = {"id", "zone", "host", "state", "binary", "status", "updated_at", "disabled_reason"}


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    tmp: Path = tmp_path_factory.mktemp("services-cluster")
    async with fake_cluster(tmp, ("north", "south")) as the_cluster:
        yield the_cluster


@pytest.fixture
def admin(cluster: Cluster, http: aiohttp.ClientSession, tenant: str) -> ComputeClient:
    return ComputeClient(http, cluster.system.url, tenant, "admin")


@pytest.fixture
def member(cluster: Cluster, http: aiohttp.ClientSession, tenant: str) -> ComputeClient:
    return ComputeClient(http, cluster.system.url, tenant, "alice")


async def test_compute_hosts_are_listed_as_nova_compute_services(admin: ComputeClient) -> None:
    reply = await admin.get("/os-services")
    assert reply.status == 200, reply
    services = reply.body["services"]
    assert [(s["binary"], s["host"], s["zone"]) for s in services] == [
        ("nova-compute", "north", "nova"),
        ("nova-compute", "south", "nova"),
    ]
    for service in services:
        assert set(service) == MEMBERS
        assert (service["status"], service["disabled_reason"]) == ("enabled", None)
        assert service["state"] == "up"
        datetime.strptime(service["updated_at"], "%Y-%m-%dT%H:%M:%S.%f")  # nova's format
    ids = [s["id"] for s in services]
    assert all(isinstance(i, int) for i in ids) and len(set(ids)) == 2


async def test_ids_are_stable_across_heartbeats_and_updates(
    admin: ComputeClient, cluster: Cluster
) -> None:
    """A service keeps its id: the heartbeats (which re-register the host) and the updates
    do not renumber it, and a host that registers later gets a new number."""
    before = {s["host"]: s["id"] for s in (await admin.get("/os-services")).body["services"]}
    assert cluster.system.pool is not None
    row = await cluster.system.pool.fetchrow(
        "SELECT hypervisor_type, hypervisor_uri, vcpus, ram_mb, disk_gb FROM compute_hosts"
        " WHERE name = 'north'"
    )
    assert row is not None
    capacity = HostCapacity(**dict(row))
    await hosts.heartbeat(cluster.system.pool, "north", capacity)  # as the agent's next beat
    body = {"host": "north", "binary": "nova-compute"}
    assert (await admin.request("PUT", "/os-services/disable", body)).status == 200
    assert (await admin.request("PUT", "/os-services/enable", body)).status == 200
    after = {s["host"]: s["id"] for s in (await admin.get("/os-services")).body["services"]}
    assert after == before
    # a host registering now (and not alive for long: no agent beats for it)
    assert await hosts.heartbeat(cluster.system.pool, "zz-late", capacity)
    try:
        listed = (await admin.get("/os-services?host=zz-late")).body["services"]
        assert listed[0]["id"] not in before.values()
        again = (await admin.get("/os-services?host=zz-late")).body["services"]
        assert again[0]["id"] == listed[0]["id"]
    finally:
        await cluster.system.pool.execute("DELETE FROM compute_hosts WHERE name = 'zz-late'")


async def test_filters_by_host_and_binary(admin: ComputeClient) -> None:
    north = (await admin.get("/os-services?host=north")).body["services"]
    assert [s["host"] for s in north] == ["north"]
    assert (await admin.get("/os-services?host=nowhere")).body["services"] == []
    compute = (await admin.get("/os-services?binary=nova-compute")).body["services"]
    assert len(compute) == 2
    assert (await admin.get("/os-services?binary=nova-scheduler")).body["services"] == []
    both = await admin.get("/os-services?binary=nova-compute&host=south")
    assert [s["host"] for s in both.body["services"]] == ["south"]


async def test_members_are_refused(member: ComputeClient) -> None:
    assert (await member.get("/os-services")).status == 403
    body = {"host": "north", "binary": "nova-compute"}
    assert (await member.request("PUT", "/os-services/disable", body)).status == 403
    assert (await member.request("PUT", "/os-services/enable", body)).status == 403


async def test_disable_and_enable_round_trip(admin: ComputeClient, cluster: Cluster) -> None:
    body = {"host": "south", "binary": "nova-compute"}
    disabled = await admin.request("PUT", "/os-services/disable", body)
    assert disabled.status == 200, disabled
    assert disabled.body == {"service": {**body, "status": "disabled"}}
    assert cluster.system.pool is not None
    row = await hosts.get(cluster.system.pool, "south")
    assert row is not None and not row.enabled  # as `stratus host disable` leaves it
    listed = (await admin.get("/os-services?host=south")).body["services"]
    assert listed[0]["status"] == "disabled"
    enabled = await admin.request("PUT", "/os-services/enable", body)
    assert enabled.body == {"service": {**body, "status": "enabled"}}
    row = await hosts.get(cluster.system.pool, "south")
    assert row is not None and row.enabled
    # no such service: an unknown host, or a binary Stratus has none of
    missing = {"host": "nowhere", "binary": "nova-compute"}
    assert (await admin.request("PUT", "/os-services/disable", missing)).status == 404
    other = {"host": "south", "binary": "nova-scheduler"}
    assert (await admin.request("PUT", "/os-services/disable", other)).status == 404
    assert (await admin.request("PUT", "/os-services/disable", {"host": "south"})).status == 400


async def test_disable_with_a_reason_shows_it_until_enabled(
    admin: ComputeClient, cluster: Cluster
) -> None:
    """nova 2013.2's disable-log-reason: the reason is kept and listed (and the operator's
    ``stratus host list`` reads the same one); enabling forgets it, as does a plain disable."""
    body = {"host": "south", "binary": "nova-compute", "disabled_reason": "disk replaced"}
    disabled = await admin.request("PUT", "/os-services/disable-log-reason", body)
    assert disabled.status == 200, disabled
    assert disabled.body == {"service": {**body, "status": "disabled"}}
    listed = await admin.get("/os-services?host=south")
    (south,) = listed.body["services"]
    assert (south["status"], south["disabled_reason"]) == ("disabled", "disk replaced")
    assert cluster.system.pool is not None
    (overview,) = [h for h in await hosts.overview(cluster.system.pool, 60) if h.name == "south"]
    assert (overview.enabled, overview.disabled_reason) == (False, "disk replaced")
    plain = {"host": "south", "binary": "nova-compute"}
    assert (await admin.request("PUT", "/os-services/enable", plain)).status == 200
    (south,) = (await admin.get("/os-services?host=south")).body["services"]
    assert (south["status"], south["disabled_reason"]) == ("enabled", None)
    await admin.request("PUT", "/os-services/disable-log-reason", body)
    assert (await admin.request("PUT", "/os-services/disable", plain)).status == 200
    (south,) = (await admin.get("/os-services?host=south")).body["services"]
    assert (south["status"], south["disabled_reason"]) == ("disabled", None)
    assert (await admin.request("PUT", "/os-services/enable", plain)).status == 200


@pytest.mark.parametrize(
    "body, status",
    [
        ({"host": "nowhere", "binary": "nova-compute", "disabled_reason": "x"}, 404),
        ({"host": "south", "binary": "nova-scheduler", "disabled_reason": "x"}, 404),
        ({"host": "south", "binary": "nova-compute"}, 400),
        ({"host": "south", "binary": "nova-compute", "disabled_reason": ""}, 400),
        ({"host": "south", "binary": "nova-compute", "disabled_reason": "   "}, 400),
        ({"host": "south", "binary": "nova-compute", "disabled_reason": "x" * 256}, 400),
        ({"host": "south", "binary": "nova-compute", "disabled_reason": 7}, 400),
    ],
)
async def test_disable_with_a_reason_refuses(
    admin: ComputeClient, cluster: Cluster, body: dict[str, object], status: int
) -> None:
    reply = await admin.request("PUT", "/os-services/disable-log-reason", body)
    assert reply.status == status, reply
    assert cluster.system.pool is not None
    row = await hosts.get(cluster.system.pool, "south")
    assert row is not None and row.enabled  # nothing was disabled


async def test_members_cannot_disable_with_a_reason(member: ComputeClient) -> None:
    body = {"host": "north", "binary": "nova-compute", "disabled_reason": "mine"}
    assert (await member.request("PUT", "/os-services/disable-log-reason", body)).status == 403


async def test_xml_follows_nova_samples(admin: ComputeClient) -> None:
    reply = await admin.request("GET", "/os-services", headers=XML)
    assert reply.status == 200
    root = ET.fromstring(reply.body)
    sample = ET.fromstring((SAMPLES / "services-list-get-resp.xml").read_bytes())
    assert root.tag == sample.tag == "services"
    assert [c.tag for c in root] == ["service", "service"]
    # nova 2013.1's attributes, and 2013.2's id; disabled_reason only when there is one
    assert all(set(c.attrib) == {*sample[0].attrib, "id"} for c in root)
    assert [int(c.attrib["id"]) for c in root] == [
        s["id"] for s in (await admin.get("/os-services")).body["services"]
    ]
    request = (SAMPLES / "service-disable-put-req.xml").read_bytes().replace(b"host1", b"north")
    disabled = await admin.request("PUT", "/os-services/disable", headers=XML_BODY, data=request)
    assert disabled.status == 200, disabled
    expected = ET.fromstring((SAMPLES / "service-disable-put-resp.xml").read_bytes())
    got = ET.fromstring(disabled.body)
    assert got.tag == expected.tag == "service"
    assert got.attrib == {**expected.attrib, "host": "north"}
    request = (SAMPLES / "service-enable-put-req.xml").read_bytes().replace(b"host1", b"north")
    enabled = await admin.request("PUT", "/os-services/enable", headers=XML_BODY, data=request)
    assert ET.fromstring(enabled.body).attrib["status"] == "enabled"


async def test_xml_disable_with_a_reason(admin: ComputeClient) -> None:
    request = b'<service host="north" binary="nova-compute" disabled_reason="fan &amp; PSU"/>'
    disabled = await admin.request(
        "PUT", "/os-services/disable-log-reason", headers=XML_BODY, data=request
    )
    assert disabled.status == 200, disabled
    got = ET.fromstring(disabled.body)
    assert (got.tag, got.attrib) == (
        "service",
        {
            "host": "north",
            "binary": "nova-compute",
            "status": "disabled",
            "disabled_reason": "fan & PSU",
        },
    )
    listed = ET.fromstring((await admin.request("GET", "/os-services", headers=XML)).body)
    reasons = {c.attrib["host"]: c.attrib.get("disabled_reason") for c in listed}
    assert reasons == {"north": "fan & PSU", "south": None}
    enable = b'<service host="north" binary="nova-compute"/>'
    enabled = await admin.request("PUT", "/os-services/enable", headers=XML_BODY, data=enable)
    assert enabled.status == 200, enabled


async def test_the_migration_numbers_hosts_already_registered_in_registration_order() -> None:
    """Migration 0019 gives the hosts a database already has their ids (in the order they
    registered), and hosts registering later get the next ones."""
    async with fresh_database(migrated=False) as url:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(
                "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            for version, name, sql in migrate.available_migrations():
                if version < 19:
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                        version,
                        name,
                    )
            await conn.execute(
                "INSERT INTO compute_hosts (name, hypervisor_type, hypervisor_uri, vcpus,"
                " ram_mb, disk_gb, last_heartbeat, created_at) VALUES"
                " ('b-first', 'fake', 'fake://', 1, 1, 1, now(), now() - interval '2 days'),"
                " ('a-second', 'fake', 'fake://', 1, 1, 1, now(), now() - interval '1 day')"
            )
            applied = await migrate.upgrade(conn)
            assert applied[0] == "0019_compute_host_service_ids.sql", applied
            capacity = HostCapacity(
                hypervisor_type="fake", hypervisor_uri="fake://", vcpus=1, ram_mb=1, disk_gb=1
            )
            for _ in range(3):  # beats of a known host: no number is used up
                await hosts.heartbeat(conn, "a-second", capacity)
            assert await hosts.heartbeat(conn, "c-third", capacity)
            listed = await hosts.services(conn, 60)
        finally:
            await conn.close()
    assert [(s.name, s.service_id) for s in listed] == [
        ("a-second", 2),
        ("b-first", 1),
        ("c-third", 3),
    ]
