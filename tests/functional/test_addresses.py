"""Fixed addresses: given when a server is placed, shown under ``addresses`` and ``/ips``,
never held twice (whatever races), given back on delete (guide 2.2.1–2.2.2)."""

from __future__ import annotations

import asyncio
import uuid
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import Any

import asyncpg

from conductor import ipam
from shared.db import ipam as ipam_db
from shared.db import servers
from shared.networks import parse_networks
from stratus.system import System
from tests.conftest import IMAGE
from tests.support import ipam_builds
from tests.support.client import ComputeClient
from tests.support.xml import COMPUTE, send

PRIVATE = ip_network("10.0.0.0/16")  # the default STRATUS_NETWORKS


async def _active(api: ComputeClient, name: str) -> dict[str, Any]:
    reply = await api.create_server(name, IMAGE)
    assert reply.status == 202, reply
    return await api.wait_for_status(reply.body["server"]["id"], "ACTIVE")


def _private_address(server: dict[str, Any]) -> IPv4Address:
    (entry,) = server["addresses"]["private"]
    assert entry["version"] == 4
    address = ip_address(entry["addr"])
    assert isinstance(address, IPv4Address)
    return address


async def _held(system: System, server_ids: list[str]) -> list[asyncpg.Record]:
    assert system.pool is not None
    return list(
        await system.pool.fetch(
            "SELECT server_id, address FROM fixed_ips WHERE server_id = ANY($1::uuid[])",
            [uuid.UUID(s) for s in server_ids],
        )
    )


# --- through the API --------------------------------------------------------------------------


async def test_a_server_gets_a_private_address_shown_in_every_form(api: ComputeClient) -> None:
    server = await _active(api, "addressed")
    address = _private_address(server)
    assert address in PRIVATE
    assert address not in (PRIVATE.network_address, PRIVATE.network_address + 1)
    networks = {"private": [{"version": 4, "addr": str(address)}]}
    path = f"/servers/{server['id']}/ips"

    everything = await api.get(path)
    assert (everything.status, everything.body) == (200, {"addresses": networks})
    one = await api.get(f"{path}/private")
    assert (one.status, one.body) == (200, networks)  # nova's form: {"<network>": [...]}

    xml_all = (await send(api, "GET", path)).xml  # Ex 2.21
    assert xml_all.tag == f"{COMPUTE}addresses"
    (network,) = xml_all
    assert (network.tag, network.attrib) == (f"{COMPUTE}network", {"id": "private"})
    assert [ip.attrib for ip in network] == [{"version": "4", "addr": str(address)}]
    xml_one = (await send(api, "GET", f"{path}/private.xml", accept="*/*")).xml  # Ex 2.23
    assert (xml_one.tag, xml_one.attrib) == (f"{COMPUTE}network", {"id": "private"})
    assert [(ip.tag, ip.attrib["addr"]) for ip in xml_one] == [(f"{COMPUTE}ip", str(address))]
    server_xml = (await send(api, "GET", f"/servers/{server['id']}")).xml
    ip = server_xml.find(f"{COMPUTE}addresses/{COMPUTE}network/{COMPUTE}ip")
    assert ip is not None and ip.attrib["addr"] == str(address)

    absent = await api.get(f"{path}/public")
    assert absent.status == 404
    assert absent.body["itemNotFound"]["message"] == "Instance is not a member of specified network"
    for method in ("POST", "PUT", "DELETE"):
        for target in (path, f"{path}/private"):
            reply = await api.request(method, target, {"addresses": {}})
            assert reply.status == 405, (method, target, reply)
            assert reply.body["badMethod"]["code"] == 405
    ghost = "/servers/9b0f3e1a-0000-4000-8000-000000000000/ips"
    assert (await api.get(ghost)).status == 404
    assert (await api.get(f"{ghost}/private")).status == 404
    await api.delete_and_wait(server["id"])


async def test_concurrent_builds_get_distinct_addresses_given_back_on_delete(
    api: ComputeClient, system: System
) -> None:
    replies = await asyncio.gather(*(api.create_server(f"many-{i}", IMAGE) for i in range(20)))
    ids = [r.body["server"]["id"] for r in replies]
    built = await asyncio.gather(*(api.wait_for_status(i, "ACTIVE") for i in ids))
    addresses = [_private_address(s) for s in built]
    assert len(set(addresses)) == 20
    held = await _held(system, ids)
    assert sorted(r["address"] for r in held) == sorted(addresses)

    await asyncio.gather(*(api.delete_and_wait(i) for i in ids))
    assert await _held(system, ids) == []
    # the freed addresses are free to take: a new server's address is the lowest free one,
    # so it is one of them unless a lower one was free already
    again = await _active(api, "after")
    assert _private_address(again) <= min(addresses)
    await api.delete_and_wait(again["id"])


async def test_a_local_delete_gives_the_addresses_back_too(
    api: ComputeClient, system: System
) -> None:
    """A server no host holds (its build failed) is deleted by the gateway itself."""
    assert system.pool is not None
    sid = uuid.uuid4()
    async with system.pool.acquire() as conn:
        await servers.insert(conn, ipam_builds.new_server(sid, api.tenant, name="no-host"))
        await conn.execute(
            "UPDATE servers SET vm_state = 'error', task_state = NULL WHERE id = $1", sid
        )
        async with conn.transaction():
            await ipam.allocate(conn, sid, parse_networks("private=10.0.0.0/16"))
    assert len(await _held(system, [str(sid)])) == 1
    shown = (await api.get(f"/servers/{sid}/ips")).body["addresses"]
    assert list(shown) == ["private"]

    assert (await api.delete(f"/servers/{sid}")).status == 204
    assert (await api.get(f"/servers/{sid}")).status == 404
    assert await _held(system, [str(sid)]) == []


# --- the allocator on a database of its own: several conductors, small networks -------------

HOST = "ipam-host"


async def _spawning(pool: asyncpg.Pool, count: int) -> list[uuid.UUID]:
    return await ipam_builds.spawning(pool, HOST, count)


async def _build_on(pool: asyncpg.Pool, server_id: uuid.UUID, networks: str) -> bool:
    return await ipam_builds.build_on(pool, server_id, networks, HOST)


async def _addresses(pool: asyncpg.Pool) -> dict[uuid.UUID, list[Any]]:
    rows = await pool.fetch("SELECT server_id, network, address FROM fixed_ips ORDER BY address")
    held: dict[uuid.UUID, list[Any]] = {}
    for row in rows:
        held.setdefault(row["server_id"], []).append((row["network"], row["address"]))
    return held


async def test_several_conductors_at_once_never_give_an_address_twice(
    conductors: list[asyncpg.Pool],
) -> None:
    networks = "private=10.20.0.0/24;v6=fd00:20::/64"
    ids = await _spawning(conductors[0], 60)
    results = await asyncio.gather(
        *(_build_on(conductors[i % len(conductors)], sid, networks) for i, sid in enumerate(ids))
    )
    assert all(results)
    held = await _addresses(conductors[0])
    assert set(held) == set(ids)
    v4 = [a for entries in held.values() for n, a in entries if n == "private"]
    v6 = [a for entries in held.values() for n, a in entries if n == "v6"]
    assert len(v4) == len(set(v4)) == 60 and len(v6) == len(set(v6)) == 60
    # the lowest free ones: .2 upwards (.0 is the network, .1 its gateway)
    assert sorted(v4) == [IPv4Address("10.20.0.2") + i for i in range(60)]
    assert sorted(v6) == [IPv6Address("fd00:20::2") + i for i in range(60)]
    shown = await conductors[0].fetchval("SELECT count(*) FROM server_addresses")
    assert shown == 120

    # a redelivered build, on any conductor, takes nothing more
    again = await asyncio.gather(*(_build_on(p, ids[0], networks) for p in conductors))
    assert all(again)
    assert await _addresses(conductors[0]) == held


async def test_the_database_refuses_a_second_holder_of_an_address(
    conductors: list[asyncpg.Pool],
) -> None:
    """Whatever the allocators do, two claims of one address cannot both succeed."""
    ids = await _spawning(conductors[0], 8)
    address = IPv4Address("10.60.0.9")

    async def claim(i: int, sid: uuid.UUID) -> bool:
        async with conductors[i % len(conductors)].acquire() as conn, conn.transaction():
            return await ipam_db.claim(conn, sid, f"net-{i}", address)

    won = await asyncio.gather(*(claim(i, sid) for i, sid in enumerate(ids)))
    assert sorted(won) == [False] * 7 + [True]
    assert await conductors[0].fetchval("SELECT count(*) FROM server_addresses") == 1


async def test_freed_addresses_are_given_out_again(conductors: list[asyncpg.Pool]) -> None:
    networks = "private=10.30.0.0/29"  # .2 to .6: five addresses
    first = await _spawning(conductors[0], 5)
    assert all([await _build_on(conductors[0], sid, networks) for sid in first])
    freed = (await _addresses(conductors[0]))[first[2]][0][1]
    async with conductors[0].acquire() as conn:
        assert await ipam_db.release(conn, first[2]) == 1
    (later,) = await _spawning(conductors[1], 1)
    assert await _build_on(conductors[1], later, networks)
    assert (await _addresses(conductors[0]))[later] == [("private", freed)]
    shown = await conductors[0].fetch(
        "SELECT network, host(address) AS addr FROM server_addresses WHERE server_id = $1", later
    )
    assert [(r["network"], r["addr"]) for r in shown] == [("private", str(freed))]


async def test_a_full_network_fails_the_build_and_gives_its_claim_back(
    conductors: list[asyncpg.Pool],
) -> None:
    networks = "first=10.40.0.0/30;second=10.41.0.0/30"  # one address each
    taker, loser = await _spawning(conductors[0], 2)
    assert await _build_on(conductors[0], taker, networks)
    assert not await _build_on(conductors[1], loser, networks)

    row = await servers.get(conductors[0], loser, None)
    assert row is not None
    assert (row.vm_state, row.task_state, row.host) == ("error", None, None)
    assert row.fault is not None
    assert row.fault["message"] == "No more fixed IP addresses available on network first."
    assert row.addresses == []
    usage = await conductors[0].fetch(
        "SELECT vcpus_used, ram_mb_used, disk_gb_used FROM compute_hosts WHERE name = $1", HOST
    )
    assert [tuple(r) for r in usage] == [(1, 512, 1)]  # only the server with addresses
    assert list(await _addresses(conductors[0])) == [taker]


async def test_a_server_deleted_before_its_addresses_gets_none(
    conductors: list[asyncpg.Pool],
) -> None:
    (sid,) = await _spawning(conductors[0], 1)
    await conductors[0].execute(
        "UPDATE servers SET deleted_at = now(), vm_state = 'deleted', task_state = NULL"
        " WHERE id = $1",
        sid,
    )
    assert not await _build_on(conductors[0], sid, "private=10.50.0.0/24")
    assert await _addresses(conductors[0]) == {}
