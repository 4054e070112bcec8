"""A user's story through the whole system in one process: create, watch, list, delete."""

from __future__ import annotations

import asyncio
import uuid

from stratus.system import System
from tests.conftest import IMAGE
from tests.support.client import ComputeClient


async def _host_usage(system: System, host: str) -> tuple[int, int, int]:
    assert system.pool is not None
    row = await system.pool.fetchrow(
        "SELECT vcpus_used, ram_mb_used, disk_gb_used FROM compute_hosts WHERE name = $1", host
    )
    assert row is not None
    return (row["vcpus_used"], row["ram_mb_used"], row["disk_gb_used"])


async def test_created_server_goes_from_build_to_active_and_delete_frees_the_host(
    api: ComputeClient, system: System
) -> None:
    before = await _host_usage(system, "functional-host")
    reply = await api.create_server("web-1", IMAGE, "2", metadata={"role": "web"})
    assert reply.status == 202
    server = reply.body["server"]
    assert set(server) == {"id", "links", "adminPass"}
    assert reply.headers["Location"] == server["links"][0]["href"]
    assert server["links"][1]["rel"] == "bookmark"

    active = await api.wait_for_status(server["id"], "ACTIVE")
    assert active["metadata"] == {"role": "web"}
    assert active["flavor"]["id"] == "2"
    assert active["image"]["id"] == IMAGE
    assert active["progress"] == 100
    assert len(active["hostId"]) == 56
    assert await _host_usage(system, "functional-host") == (
        before[0] + 1,
        before[1] + 2048,
        before[2] + 20,
    )

    listed = await api.get("/servers")
    assert [s["id"] for s in listed.body["servers"]] == [server["id"]]
    assert set(listed.body["servers"][0]) == {"id", "name", "links"}

    assert (await api.delete(f"/servers/{server['id']}")).status == 204
    await api.wait_for_status(server["id"], "DELETED")
    assert await _host_usage(system, "functional-host") == before
    assert (await api.get("/servers/detail")).body["servers"] == []


async def test_many_servers_built_concurrently_all_become_active(api: ComputeClient) -> None:
    replies = await asyncio.gather(*(api.create_server(f"s{i}", IMAGE) for i in range(20)))
    assert {r.status for r in replies} == {202}
    ids = [r.body["server"]["id"] for r in replies]
    await asyncio.gather(*(api.wait_for_status(i, "ACTIVE") for i in ids))
    detail = await api.get("/servers/detail")
    assert {s["status"] for s in detail.body["servers"]} == {"ACTIVE"}
    await asyncio.gather(*(api.delete(f"/servers/{i}") for i in ids))
    await asyncio.gather(*(api.wait_for_status(i, "DELETED") for i in ids))


async def test_a_flavor_no_host_could_ever_hold_is_refused_at_once(
    api: ComputeClient, system: System
) -> None:
    assert system.pool is not None
    await system.pool.execute(
        "INSERT INTO flavors (id, name, ram_mb, disk_gb, vcpus)"
        " VALUES ('huge', 'huge', 10000000, 1, 1) ON CONFLICT DO NOTHING"
    )
    try:
        reply = await api.create_server("too-big", IMAGE, "huge")
        assert reply.status == 503
        assert reply.body["serverCapacityUnavailable"]["code"] == 503
        assert "Retry-After" in reply.headers
        assert (await api.get("/servers")).body["servers"] == []
    finally:
        await system.pool.execute("DELETE FROM flavors WHERE id = 'huge'")


async def test_a_server_no_host_has_room_for_now_ends_in_error_with_a_fault(
    api: ComputeClient, system: System
) -> None:
    assert system.pool is not None
    # the functional host has 64 GB (96 GB with the RAM overcommit): this fits once
    await system.pool.execute(
        "INSERT INTO flavors (id, name, ram_mb, disk_gb, vcpus)"
        " VALUES ('big', 'big', 60000, 1, 1) ON CONFLICT DO NOTHING"
    )
    try:
        first = (await api.create_server("first", IMAGE, "big")).body["server"]["id"]
        await api.wait_for_status(first, "ACTIVE")
        reply = await api.create_server("second", IMAGE, "big")
        assert reply.status == 202
        server = await api.wait_for_status(reply.body["server"]["id"], "ERROR")
        assert server["fault"]["code"] == 500
        assert "No valid host" in server["fault"]["message"]
        assert server["fault"]["created"].endswith("Z")
        # a server in ERROR can still be deleted
        await api.delete_and_wait(server["id"])
        await api.delete_and_wait(first)
    finally:
        await system.pool.execute("DELETE FROM flavors WHERE id = 'big'")


async def test_deleting_twice_is_harmless_and_a_third_time_is_not_found(
    api: ComputeClient,
) -> None:
    reply = await api.create_server("twice", IMAGE)
    server_id = reply.body["server"]["id"]
    await api.wait_for_status(server_id, "ACTIVE")
    first, second = await asyncio.gather(
        api.delete(f"/servers/{server_id}"), api.delete(f"/servers/{server_id}")
    )
    assert {first.status, second.status} <= {204, 404}
    await api.wait_for_status(server_id, "DELETED")
    assert (await api.delete(f"/servers/{server_id}")).status == 404


async def test_another_projects_server_is_not_found(api: ComputeClient, client_for: object) -> None:
    reply = await api.create_server("private", IMAGE)
    server_id = reply.body["server"]["id"]
    other = client_for("someone-else", "mallory")  # type: ignore[operator]
    assert (await other.get(f"/servers/{server_id}")).status == 404
    assert (await other.delete(f"/servers/{server_id}")).status == 404
    assert (await api.get(f"/servers/{server_id}")).status == 200
    await api.delete_and_wait(server_id)


async def test_detail_list_never_shows_a_stale_representation(
    api: ComputeClient, system: System
) -> None:
    assert system.pool is not None
    server_id = (await api.create_server("fresh", IMAGE)).body["server"]["id"]
    await api.get("/servers/detail")  # rendered (and remembered) while building
    await api.wait_for_status(server_id, "ACTIVE")
    (listed,) = (await api.get("/servers/detail")).body["servers"]
    assert listed["status"] == "ACTIVE"

    # a change to a child row (metadata) shows up too: the trigger bumps the version
    await system.pool.execute(
        "INSERT INTO server_metadata (server_id, key, value) VALUES ($1, 'k', 'v')",
        uuid.UUID(server_id),
    )
    (listed,) = (await api.get("/servers/detail")).body["servers"]
    assert listed["metadata"] == {"k": "v"}
    await api.delete_and_wait(server_id)
