"""nova 2013.1's os-services (administrators), on two hosts of the fake hypervisor with a
database of their own: the compute hosts listed as nova-compute services, the filters, and
taking a host out of scheduling and back."""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
from tempest.lib.api_schema.response.compute.v2_1 import services as schemas

from shared.db import hosts
from tests.support.client import ComputeClient
from tests.support.cluster import Cluster, fake_cluster

SAMPLES = Path(__file__).parent.parent / "samples" / "nova-2013.1" / "os-services"
XML = {"Accept": "application/xml"}
XML_BODY = {"Accept": "application/xml", "Content-Type": "application/xml"}
#: nova 2013.1's members of a service: tempest's v2.1 schema, without the ``id`` and
#: ``disabled_reason`` nova added later (every member sent must still be one it knows)
NOVA_2013_1 = ["zone", "host", "state", "binary", "status", "updated_at"]


def _list_schema() -> dict[str, Any]:
    schema = copy.deepcopy(schemas.list_services["response_body"])
    schema["properties"]["services"]["items"]["required"] = NOVA_2013_1
    return schema


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
    jsonschema.validate(reply.body, _list_schema())
    services = reply.body["services"]
    assert [(s["binary"], s["host"], s["zone"]) for s in services] == [
        ("nova-compute", "north", "nova"),
        ("nova-compute", "south", "nova"),
    ]
    for service in services:
        assert set(service) == set(NOVA_2013_1)
        assert service["status"] == "enabled"
        assert service["state"] == "up"
        datetime.strptime(service["updated_at"], "%Y-%m-%dT%H:%M:%S.%f")  # nova's format


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
    jsonschema.validate(disabled.body, schemas.enable_disable_service["response_body"])
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


async def test_xml_follows_nova_samples(admin: ComputeClient) -> None:
    reply = await admin.request("GET", "/os-services", headers=XML)
    assert reply.status == 200
    root = ET.fromstring(reply.body)
    sample = ET.fromstring((SAMPLES / "services-list-get-resp.xml").read_bytes())
    assert root.tag == sample.tag == "services"
    assert [c.tag for c in root] == ["service", "service"]
    assert all(set(c.attrib) == set(sample[0].attrib) for c in root)
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
