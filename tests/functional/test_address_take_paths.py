"""The three ways an address is taken off ``free_addresses`` (shared/db/ipam.py): ``take_free``
(the long way, in a transaction), ``take_for_build`` (a build's statement of its own) and the
placement statement (``Scheduler.place_server`` with the build's networks). They are one SQL
fragment written once; this holds them to it from the outside: on networks of the same range,
each hands out the same addresses in the same order (the lowest free first, one given back
included) and writes the same ``fixed_ips`` and ``server_addresses`` rows, IPv4 and IPv6."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from ipaddress import IPv4Address, IPv6Address
from typing import Any

import asyncpg
import pytest

from conductor.scheduler.scheduler import Scheduler
from shared.db import ipam, servers
from shared.db.hosts import Ratios, Resources
from shared.db.pool import Conn
from shared.networks import Network, parse_networks
from tests.support import ipam_builds

HOST = "take-paths-host"
#: one IPv4 and one IPv6 network, the same ranges for every path (``{}``: the path's name)
RANGES = "{}4=10.62.0.0/29;{}6=fd00:62::/125"
NEED = Resources(1, 512, 1)  # ipam_builds.new_server's flavor

#: a path: the addresses taken for one server on each network (by label), as it reports them
Take = Callable[[asyncpg.Pool, uuid.UUID, tuple[Network, ...]], Awaitable[dict[str, Any]]]
#: servers ready for a path (placed on HOST, or waiting for a host for the placement)
Servers = Callable[[asyncpg.Pool, int], Awaitable[list[uuid.UUID]]]


@pytest.fixture
def pool(conductor_pool: asyncpg.Pool) -> asyncpg.Pool:
    return conductor_pool


@asynccontextmanager
async def _scanning(pool: asyncpg.Pool) -> AsyncIterator[Conn]:
    """A connection of ``pool`` that reads tables in their physical order, not an index's:
    a take's rows then come in the order its SQL asks for, or in the order they were written
    (an address given back comes last), so a take that stopped asking for the lowest shows.
    Reset before the connection goes back: our pools skip asyncpg's reset."""
    async with pool.acquire() as conn:
        await conn.execute("SET enable_indexscan = off; SET enable_bitmapscan = off")
        try:
            yield conn
        finally:
            await conn.execute("RESET enable_indexscan; RESET enable_bitmapscan")


async def _spawning(pool: asyncpg.Pool, count: int) -> list[uuid.UUID]:
    return await ipam_builds.spawning(pool, HOST, count)


async def _scheduling(pool: asyncpg.Pool, count: int) -> list[uuid.UUID]:
    """Servers waiting for a host, as the gateway leaves them."""
    ids = [uuid.uuid4() for _ in range(count)]
    async with pool.acquire() as conn:
        for server_id in ids:
            await servers.insert(conn, ipam_builds.new_server(server_id))
    return ids


async def _by_take_free(
    pool: asyncpg.Pool, server_id: uuid.UUID, networks: tuple[Network, ...]
) -> dict[str, Any]:
    async with _scanning(pool) as conn, conn.transaction():
        return {
            n.label: await ipam.take_free(conn, server_id, n.label, n.first, n.last)
            for n in networks
        }


async def _by_take_for_build(
    pool: asyncpg.Pool, server_id: uuid.UUID, networks: tuple[Network, ...]
) -> dict[str, Any]:
    taken: dict[str, Any] = {}
    async with _scanning(pool) as conn:
        for n in networks:
            took = await ipam.take_for_build(conn, server_id, HOST, n.label, n.first, n.last)
            assert (took.waiting, took.held) == (True, None)
            taken[n.label] = took.taken
    return taken


async def _by_placement(
    pool: asyncpg.Pool, server_id: uuid.UUID, networks: tuple[Network, ...]
) -> dict[str, Any]:
    scheduler = Scheduler(ratios=Ratios(1.0, 1.0, 1.0), subset_size=1)
    async with _scanning(pool) as conn:
        placed = await scheduler.place_server(conn, server_id, NEED, networks=networks)
    assert placed.host == HOST
    assert all(took.held is None for took in placed.addresses.values())
    return {label: took.taken for label, took in placed.addresses.items()}


PATHS: dict[str, tuple[Servers, Take]] = {
    "free": (_spawning, _by_take_free),
    "build": (_spawning, _by_take_for_build),
    "placed": (_scheduling, _by_placement),
}


async def _run(pool: asyncpg.Pool, path: str) -> dict[str, Any]:
    """Three servers take an address on fresh networks of ``RANGES`` by ``path``, the second
    gives its back, a fourth takes one: what each take reported and what the tables hold
    then, the networks named by family and the servers by their order, to compare paths by.
    The servers are deleted after, so the next path finds the range free again."""
    make, take = PATHS[path]
    networks = tuple(sorted(parse_networks(RANGES.format(path, path)), key=lambda n: n.label))
    async with pool.acquire() as conn, conn.transaction():  # the pools written, as a first
        for n in networks:  # allocator writes them (no path writes them itself)
            await ipam.lock_pool(conn, n.label, n.first, n.last)
            await ipam.write_free(conn, n.label, n.first, n.last)
    ids = await make(pool, 4)
    order = {sid: i for i, sid in enumerate(ids)}
    family = {n.label: n.label.removeprefix(path) for n in networks}

    taken: list[dict[str, Any]] = []
    for i, server_id in enumerate(ids):
        if i == 3:  # the second server's addresses go back: the lowest free again
            async with pool.acquire() as conn, conn.transaction():
                assert await ipam.release(conn, ids[1]) == len(networks)
        took = await take(pool, server_id, networks)
        taken.append({family[label]: t for label, t in took.items()})

    labels = list(family)
    fixed = await pool.fetch(
        "SELECT network, address, server_id FROM fixed_ips WHERE network = ANY($1::text[])",
        labels,
    )
    shown = await pool.fetch(
        """SELECT network, version, address, server_id FROM server_addresses
            WHERE network = ANY($1::text[])""",
        labels,
    )
    free = await pool.fetch(
        "SELECT network, address FROM free_addresses WHERE network = ANY($1::text[])", labels
    )
    await pool.execute("DELETE FROM servers WHERE id = ANY($1::uuid[])", ids)
    return {
        "taken": taken,
        "fixed_ips": sorted(
            (order[r["server_id"]], family[r["network"]], r["address"]) for r in fixed
        ),
        "server_addresses": sorted(
            (order[r["server_id"]], family[r["network"]], r["version"], r["address"]) for r in shown
        ),
        "free": sorted((family[r["network"]], r["address"]) for r in free),
    }


async def test_every_path_takes_the_same_addresses_and_writes_the_same_rows(
    pool: asyncpg.Pool,
) -> None:
    outcomes = {path: await _run(pool, path) for path in PATHS}

    v4, v6 = IPv4Address("10.62.0.2"), IPv6Address("fd00:62::2")  # the first of each range
    held = [  # server 1's go back and are server 3's: the lowest free first
        (0, "4", 4, v4),
        (0, "6", 6, v6),
        (2, "4", 4, v4 + 2),
        (2, "6", 6, v6 + 2),
        (3, "4", 4, v4 + 1),
        (3, "6", 6, v6 + 1),
    ]
    assert outcomes["free"]["server_addresses"] == held
    assert outcomes["free"]["fixed_ips"] == [(s, net, address) for s, net, _, address in held]
    assert [
        {net: (t.address, t.claimed, t.filled_to) for net, t in took.items()}
        for took in outcomes["free"]["taken"]
    ] == [{"4": (v4 + i, True, v4 + 4), "6": (v6 + i, True, v6 + 5)} for i in (0, 1, 2, 1)]
    assert outcomes["free"]["free"] == [("4", v4 + i) for i in (3, 4)] + [
        ("6", v6 + i) for i in (3, 4, 5)
    ]
    for path in ("build", "placed"):
        assert outcomes[path] == outcomes["free"], path
