"""The detailed list's page cache (api_gateway/controllers/servers.py ``detail``): a page is
served whole from memory while its servers are unchanged, so every way a page can change must
show at once, and no page may answer a request it was not rendered for (another format,
query, project or caller). Each page is asked for twice first, so the second answer is the
cached one and a stale cache would show in the third."""

from __future__ import annotations

import asyncio
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import pytest

from shared.db import servers as server_rows
from shared.db.records import ServerEntry
from stratus.system import System
from tests.conftest import IMAGE
from tests.support.actions import active_server
from tests.support.client import ComputeClient

XML = {"Accept": "application/xml"}
COMPUTE = "{http://docs.openstack.org/compute/api/v1.1}"


@pytest.fixture
def admin(client_for: Callable[[str, str], ComputeClient], tenant: str) -> ComputeClient:
    return client_for(tenant, "admin")


async def _page(client: ComputeClient, query: str = "") -> dict[str, Any]:
    """The page, asked for twice: the second answer comes from the cache, and must be the
    first (nothing changed in between)."""
    first = await client.get(f"/servers/detail{query}")
    second = await client.get(f"/servers/detail{query}")
    assert first.status == second.status == 200, (first, second)
    assert first.body == second.body
    body: dict[str, Any] = second.body
    return body


async def _servers(client: ComputeClient, query: str = "") -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in (await _page(client, query))["servers"]}


async def test_a_cached_page_follows_every_change_to_its_servers(
    api: ComputeClient, system: System
) -> None:
    assert system.pool is not None
    first = await active_server(api, "first", IMAGE)
    second = await active_server(api, "second", IMAGE)
    assert {s["name"] for s in (await _servers(api)).values()} == {"first", "second"}

    renamed = await api.request("PUT", f"/servers/{first}", {"server": {"name": "renamed"}})
    assert renamed.status == 200
    assert (await _servers(api))[first]["name"] == "renamed"

    tagged = await api.post(f"/servers/{second}/metadata", {"metadata": {"k": "v"}})
    assert tagged.status == 200
    assert (await _servers(api))[second]["metadata"] == {"k": "v"}

    # a change the conductor makes (a state), straight in the database: no gateway involved
    await system.pool.execute(
        "UPDATE servers SET vm_state = 'stopped', power_state = 4 WHERE id = $1",
        uuid.UUID(second),
    )
    assert (await _servers(api))[second]["status"] == "SHUTOFF"

    # an address (a child row: its trigger bumps the server's version)
    await system.pool.execute(
        "INSERT INTO server_addresses (server_id, network, version, address)"
        " VALUES ($1, 'extra', 4, '192.0.2.7')",
        uuid.UUID(first),
    )
    assert (await _servers(api))[first]["addresses"]["extra"] == [
        {"version": 4, "addr": "192.0.2.7"}
    ]

    third = await active_server(api, "third", IMAGE)
    assert set(await _servers(api)) == {first, second, third}

    await api.delete_and_wait(first)
    assert set(await _servers(api)) == {second, third}
    for server_id in (second, third):
        await api.delete_and_wait(server_id)
    assert await _servers(api) == {}


async def test_pages_of_one_project_differ_by_query_and_format(api: ComputeClient) -> None:
    ids = [await active_server(api, f"paged-{i}", IMAGE) for i in range(3)]
    whole = await _page(api)
    assert [s["id"] for s in whole["servers"]] == ids[::-1]  # newest first
    assert "servers_links" not in whole

    first_page = await _page(api, "?limit=2")
    assert [s["id"] for s in first_page["servers"]] == ids[:0:-1]
    assert "marker=" + ids[1] in first_page["servers_links"][0]["href"]
    rest = await _page(api, f"?limit=2&marker={ids[1]}")
    assert [s["id"] for s in rest["servers"]] == [ids[0]]
    assert [s["id"] for s in (await _page(api, "?name=paged-1"))["servers"]] == [ids[1]]

    xml_replies = [await api.request("GET", "/servers/detail", headers=XML) for _ in range(2)]
    assert xml_replies[0].body == xml_replies[1].body
    document = ET.fromstring(xml_replies[1].body)
    assert [s.get("id") for s in document.findall(f"{COMPUTE}server")] == ids[::-1]

    # a page of the deleted (changes-since) shows a delete once it happened
    since = "?changes-since=2000-01-01T00:00:00Z"
    assert {s["status"] for s in (await _servers(api, since)).values()} == {"ACTIVE"}
    await api.delete_and_wait(ids[0])
    assert (await _servers(api, since))[ids[0]]["status"] == "DELETED"
    assert [s["id"] for s in (await _page(api, "?limit=2"))["servers"]] == ids[:0:-1]
    assert "servers_links" not in await _page(api, "?limit=2")
    for server_id in ids[1:]:
        await api.delete_and_wait(server_id)


async def test_a_refused_query_string_is_refused_every_time(api: ComputeClient) -> None:
    """Parsed query strings are remembered (``_list_query``); a refused one never is."""
    for query in ("?limit=-1", "?limit=x", "?name=(", "?changes-since=yesterday"):
        for _ in range(2):
            reply = await api.request("GET", f"/servers/detail{query}", check_schema=False)
            assert reply.status == 400, (query, reply)


async def test_callers_of_one_url_never_share_a_page(
    api: ComputeClient,
    admin: ComputeClient,
    client_for: Callable[[str, str], ComputeClient],
) -> None:
    """``all_tenants`` lists every project for an administrator and is ignored for a member:
    the same URL, two pages; and the administrator's page shows the host, the member's not."""
    other = client_for(f"t{uuid.uuid4().hex[:10]}", "bob")
    mine = await active_server(api, "mine", IMAGE)
    theirs = await active_server(other, "theirs", IMAGE)
    query = "?all_tenants=1"
    for _ in range(3):  # at once too: concurrent requests share only their own queries
        everyone, members, others = await asyncio.gather(
            _servers(admin, query), _servers(api, query), _servers(other, query)
        )
        assert {mine, theirs} <= set(everyone)
        assert "OS-EXT-SRV-ATTR:host" in everyone[mine]
        assert set(members) == {mine}
        assert "OS-EXT-SRV-ATTR:host" not in members[mine]
        assert set(others) == {theirs}
    await api.delete_and_wait(mine)
    await other.delete_and_wait(theirs)


async def test_a_write_shows_in_the_next_read_under_concurrent_reads(
    api: ComputeClient,
) -> None:
    """Concurrent reads of one page share their queries (``Coalescer``): a read that starts
    after a write was acknowledged must still see it, however many reads are in flight."""
    server_id = await active_server(api, "busy", IMAGE)
    stop = asyncio.Event()

    async def reader() -> None:
        while not stop.is_set():
            assert (await api.get("/servers/detail")).status == 200

    readers = [asyncio.ensure_future(reader()) for _ in range(8)]
    try:
        for value in range(10):
            await asyncio.sleep(0.005)
            put = await api.request(
                "PUT", f"/servers/{server_id}/metadata/round", {"meta": {"round": str(value)}}
            )
            assert put.status == 200, put
            (listed,) = (await api.get("/servers/detail")).body["servers"]
            assert listed["metadata"] == {"round": str(value)}
    finally:
        stop.set()
        await asyncio.gather(*readers)
    await api.delete_and_wait(server_id)


@pytest.mark.parametrize("version", [1, 255, 256, 70_000, 2**40 + 3, 2**63 - 1])
async def test_the_packed_key_is_packed_as_postgresql_packs_it(
    system: System, version: int
) -> None:
    """``page_versions`` (packed by PostgreSQL) and ``packed_versions`` (packed here, for the
    page kept) must agree byte for byte, or no page would ever be found again."""
    assert system.pool is not None
    server_id = uuid.uuid4()
    from_database = await system.pool.fetchrow(
        "SELECT uuid_send($1::uuid) AS id, int8send($2::bigint) AS version", server_id, version
    )
    assert from_database is not None
    entry = ServerEntry(server_id, "name", version)
    assert server_rows.packed_versions([entry, entry]) == (
        from_database["id"] * 2,
        from_database["version"] * 2,
    )


async def test_a_listed_page_is_found_by_its_versions(api: ComputeClient, system: System) -> None:
    """The two halves of the key, for a real page: what the detailed list keeps a page under
    is what its next lookup computes."""
    assert system.pool is not None
    for i in range(2):
        await active_server(api, f"keyed-{i}", IMAGE)
    for limit in (1, 3):
        rows = await server_rows.list_page(system.pool, api.tenant, marker=None, limit=limit)
        versions = await server_rows.page_versions(
            system.pool, api.tenant, marker=None, limit=limit
        )
        assert server_rows.packed_versions(rows) == versions
    empty = await server_rows.page_versions(system.pool, "nobody-here", marker=None, limit=3)
    assert empty == server_rows.packed_versions([]) == (b"", b"")
