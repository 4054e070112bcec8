"""os-multiple-create (issue 13): several servers from one request, all or none, within the
quota; named ``name-1`` … ``name-N``; one reservation they share, answered on request and
usable as a list filter."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from api_gateway.app import create_app
from shared.rpcapi import domain_name
from stratus.system import System
from tests import conftest
from tests.conformance.shapes import compare_json, compare_xml
from tests.conftest import IMAGE
from tests.support.brokers import RefusingBroker
from tests.support.client import ComputeClient
from tests.support.gateway import gateway_of_its_own, serving
from tests.support.xml import COMPUTE, XML, sample, send

RESERVATION = re.compile(r"^r-[a-z0-9]{8}$")
SAMPLES = "nova-2013.1/os-multiple-create"


async def _names_in(api: ComputeClient, reservation_id: str) -> dict[str, str]:
    """{name: id} of the project's servers in one reservation."""
    listed = await api.get(f"/servers?reservation_id={reservation_id}")
    assert listed.status == 200, listed
    return {s["name"]: s["id"] for s in listed.body["servers"]}


async def _delete_all(api: ComputeClient, server_ids: list[str]) -> None:
    for server_id in server_ids:
        await api.delete_and_wait(server_id)


async def test_three_servers_from_one_request(api: ComputeClient) -> None:
    created = await api.create_server("web", IMAGE, min_count=3, max_count=3)
    assert created.status == 202, created
    first = created.body["server"]
    assert set(first) == {"id", "links", "adminPass"}

    shown = await api.wait_for_status(first["id"], "ACTIVE")
    assert shown["name"] == "web-1"
    listed = await api.get("/servers")
    names = {s["name"]: s["id"] for s in listed.body["servers"]}
    assert sorted(names) == ["web-1", "web-2", "web-3"]
    for server_id in names.values():
        await api.wait_for_status(server_id, "ACTIVE")
    await _delete_all(api, list(names.values()))


async def test_the_reservation_is_answered_and_filters_the_list(api: ComputeClient) -> None:
    alone = await api.create_server("alone", IMAGE)
    assert alone.status == 202, alone
    created = await api.create_server(
        "batch", IMAGE, min_count="2", max_count="2", return_reservation_id="True"
    )
    assert created.status == 202, created
    assert set(created.body) == {"reservation_id"}
    reservation = created.body["reservation_id"]
    assert RESERVATION.match(reservation), reservation

    batch = await _names_in(api, reservation)
    assert sorted(batch) == ["batch-1", "batch-2"]
    detail = await api.get(f"/servers/detail?reservation_id={reservation}")
    assert sorted(s["name"] for s in detail.body["servers"]) == ["batch-1", "batch-2"]
    assert (await _names_in(api, "r-00000000")) == {}
    # one server alone has a reservation of its own, not the batch's
    assert alone.body["server"]["id"] not in batch.values()
    await _delete_all(api, [*batch.values(), alone.body["server"]["id"]])


async def test_one_server_keeps_its_name_and_a_reservation_of_its_own(api: ComputeClient) -> None:
    created = await api.create_server("single", IMAGE, min_count=1, return_reservation_id=True)
    assert created.status == 202, created
    batch = await _names_in(api, created.body["reservation_id"])
    assert list(batch) == ["single"]
    await _delete_all(api, list(batch.values()))


async def test_multiple_create_in_xml(api: ComputeClient) -> None:
    """nova's XML sample form: the counts and the flag as attributes (text)."""
    body = (
        f'<server xmlns="{COMPUTE[1:-1]}" name="x" imageRef="{IMAGE}" flavorRef="1"'
        ' min_count="2" max_count="2" return_reservation_id="True"/>'
    )
    created = await send(api, "POST", "/servers", body, content_type=XML)
    assert created.status == 202, created
    element = created.xml
    assert element.tag == f"{COMPUTE}server"
    reservation = element.attrib["reservation_id"]
    assert RESERVATION.match(reservation)
    batch = await _names_in(api, reservation)
    assert sorted(batch) == ["x-1", "x-2"]

    plain = (
        f'<server xmlns="{COMPUTE[1:-1]}" name="y" imageRef="{IMAGE}" flavorRef="1"'
        ' min_count="2" max_count="2"/>'
    )
    first = await send(api, "POST", "/servers", plain, content_type=XML)
    assert first.status == 202, first
    assert first.xml.attrib["adminPass"]
    shown = await api.wait_for_status(first.xml.attrib["id"], "ACTIVE")
    assert shown["name"] == "y-1"
    listed = await api.get("/servers?name=^y-")
    await _delete_all(api, [*batch.values(), *(s["id"] for s in listed.body["servers"])])


@pytest.mark.parametrize(
    ("counts", "field"),
    [
        ({"min_count": 0}, "min_count"),
        ({"max_count": 0}, "max_count"),
        ({"min_count": 3, "max_count": 2}, "min_count must be <= max_count"),
        ({"min_count": "two"}, "min_count"),
        ({"min_count": True}, "min_count"),
        ({"max_count": 1.5}, "max_count"),
        ({"max_count": 1001}, "max_count"),
        ({"return_reservation_id": "perhaps"}, "return_reservation_id"),
    ],
)
async def test_counts_that_are_no_counts_are_refused(
    api: ComputeClient, counts: dict[str, Any], field: str
) -> None:
    refused = await api.create_server("bad", IMAGE, **counts)
    assert refused.status == 400, refused
    assert field in refused.body["badRequest"]["message"]
    assert (await api.get("/servers")).body["servers"] == []


async def test_the_quota_bounds_the_batch_all_or_none(
    system: System,
    http: aiohttp.ClientSession,
    tmp_path: Path,
    client_for: Callable[[str, str], ComputeClient],
    tenant: str,
) -> None:
    async with gateway_of_its_own(system, tmp_path, quota_instances=4) as url:
        api = ComputeClient(http, url, tenant, "alice")
        one = await api.create_server("first", IMAGE)
        assert one.status == 202, one

        # more than the quota's room and more than the least asked for: 413, none made
        refused = await api.create_server("many", IMAGE, min_count=4, max_count=6)
        assert refused.status == 413, refused
        message = refused.body["overLimit"]["message"]
        assert "Quota exceeded for instances: Requested 6, but already used 1 of 4" in message
        assert len((await api.get("/servers")).body["servers"]) == 1

        # room for three of at most five, at least two asked: three are made (nova's rule)
        made = await api.create_server(
            "some", IMAGE, min_count=2, max_count=5, return_reservation_id=True
        )
        assert made.status == 202, made
        batch = await _names_in(api, made.body["reservation_id"])
        assert sorted(batch) == ["some-1", "some-2", "some-3"]
        full = await api.create_server("more", IMAGE)
        assert full.status == 413, full
        await _delete_all(api, [*batch.values(), one.body["server"]["id"]])


async def test_the_extension_is_listed(api: ComputeClient) -> None:
    reply = await api.get("/extensions/os-multiple-create")
    assert reply.status == 200, reply
    assert reply.body["extension"]["name"] == "MultipleCreate"


async def _domains_of(system: System, server_ids: set[uuid.UUID]) -> set[str]:
    """The domains of ``server_ids`` that any host of the system holds."""
    names = {domain_name(server_id) for server_id in server_ids}
    held: set[str] = set()
    for driver in system.drivers.values():
        held |= names & set(await driver.list_instances())
    return held


async def test_a_batch_the_broker_refuses_in_part_is_taken_back_whole(
    system: System, http: aiohttp.ClientSession, tmp_path: Path, api: ComputeClient
) -> None:
    """All or none: the broker took the first build and refused the second; the request is
    503 and none of the three servers stays, not even the one whose build was sent (the
    conductor finds it gone and drops it)."""
    assert system.bus is not None and system.pool is not None
    broker = RefusingBroker(system.bus, take=1)  # the first build goes, the second is refused
    app = create_app(conftest.test_settings(tmp_path), pool=system.pool, bus=broker.as_bus())
    async with serving(app) as url:
        member = ComputeClient(http, url, api.tenant, "alice")
        refused = await member.create_server("lost", IMAGE, min_count=3, max_count=3)
    assert refused.status == 503, refused
    assert broker.offered >= 2
    rows = await system.pool.fetch(
        "SELECT id, vm_state, deleted_at FROM servers WHERE tenant_id = $1", api.tenant
    )
    assert len(rows) == 3 and all(r["deleted_at"] is not None for r in rows), rows
    failed = await system.pool.fetch(
        "SELECT result FROM actions WHERE server_id = ANY($1::uuid[])", [r["id"] for r in rows]
    )
    assert [f["result"] for f in failed] == ["error"] * 3
    assert (await api.get("/servers")).body["servers"] == []

    # the build that went out was dropped (its server gone), or, had it been built before the
    # refusal came, its host was told to destroy it
    await _until_no_domains(system, {r["id"] for r in rows})


async def _until_no_domains(system: System, server_ids: set[uuid.UUID]) -> None:
    """Wait (10 s at most) until no host holds a domain of ``server_ids``."""
    deadline = time.monotonic() + 10
    while held := await _domains_of(system, server_ids):
        assert time.monotonic() < deadline, f"still held: {held}"
        await asyncio.sleep(0.1)


async def test_a_batch_whose_first_server_was_built_before_the_refusal_is_taken_back(
    system: System, http: aiohttp.ClientSession, tmp_path: Path, api: ComputeClient
) -> None:
    """The broker takes the first build and nacks the second only once the first server is
    ACTIVE (a slow nack): the request is still 503, the built server is destroyed on its
    host, its claim given back, and every create action says error."""
    assert system.bus is not None and system.pool is not None
    pool = system.pool
    usage = "SELECT vcpus_used, ram_mb_used, disk_gb_used FROM compute_hosts ORDER BY name"
    before = [tuple(r) for r in await pool.fetch(usage)]

    async def first_built() -> None:
        deadline = time.monotonic() + 30
        query = "SELECT 1 FROM servers WHERE tenant_id = $1 AND vm_state = 'active'"
        while not await pool.fetchval(query, api.tenant):
            assert time.monotonic() < deadline, "the first server of the batch never ran"
            await asyncio.sleep(0.05)

    broker = RefusingBroker(system.bus, take=1, before_refusing=first_built)
    app = create_app(conftest.test_settings(tmp_path), pool=pool, bus=broker.as_bus())
    async with serving(app) as url:
        member = ComputeClient(http, url, api.tenant, "alice")
        refused = await member.create_server("built", IMAGE, min_count=2, max_count=2)
    assert refused.status == 503, refused
    rows = await pool.fetch("SELECT id, deleted_at FROM servers WHERE tenant_id = $1", api.tenant)
    assert len(rows) == 2 and all(r["deleted_at"] is not None for r in rows), rows
    results = await pool.fetch(
        "SELECT result FROM actions WHERE server_id = ANY($1::uuid[])", [r["id"] for r in rows]
    )
    assert [r["result"] for r in results] == ["error", "error"]
    await _until_no_domains(system, {r["id"] for r in rows})
    assert [tuple(r) for r in await pool.fetch(usage)] == before


@pytest.mark.parametrize("with_reservation", [False, True])
async def test_nova_samples_in_json_and_xml(api: ComputeClient, with_reservation: bool) -> None:
    """nova 2013.1's os-multiple-create samples (counts as text, metadata, a personality
    file) against our image: the answers have the samples' shapes."""
    name = "multiple-create-post" if with_reservation else "multiple-create-no-resv-post"
    request = json.loads(sample(f"{SAMPLES}/{name}-req.json"))
    request["server"]["imageRef"] = IMAGE
    created = await api.post("/servers", request)
    assert created.status == 202, created
    compare_json(json.loads(sample(f"{SAMPLES}/{name}-resp.json")), created.body)

    body = re.sub(r'imageRef="[^"]*"', f'imageRef="{IMAGE}"', sample(f"{SAMPLES}/{name}-req.xml"))
    as_xml = await send(api, "POST", "/servers", body, content_type=XML)
    assert as_xml.status == 202, as_xml
    compare_xml(sample(f"{SAMPLES}/{name}-resp.xml").encode(), as_xml.text.encode())

    listed = (await api.get("/servers")).body["servers"]
    assert sorted(s["name"] for s in listed) == [f"new-server-test-{n}" for n in (1, 1, 2, 2, 3, 3)]
    await _delete_all(api, [s["id"] for s in listed])
