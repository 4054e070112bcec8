"""A build's addresses taken by its placement statement (issue 18): a server placed now gets
one address on every network in the statement that places it, one round trip for the whole
build; whatever that statement could not take (no free row written yet, a stale row, a full
network) is taken the way it always was, and a build delivered again takes nothing twice."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from ipaddress import IPv4Address
from typing import Any

import asyncpg
import pytest

from conductor.build import Builds
from conductor.scheduler.scheduler import Scheduler
from shared.config import Settings
from shared.db import servers
from shared.db.hosts import Ratios
from tests.support import ipam_builds
from tests.support.recorders import CountingConnection, RecordingBus, counting_pool

HOST = "folded-host"


@pytest.fixture
async def counted(host_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await counting_pool(host_database_url, max_size=1)
    try:
        yield pool
    finally:
        await pool.execute("DELETE FROM servers")  # their addresses are free again
        await pool.execute(
            "UPDATE compute_hosts SET vcpus_used = 0, ram_mb_used = 0, disk_gb_used = 0"
        )
        await pool.close()


def _builds(pool: asyncpg.Pool, networks: str, bus: RecordingBus | None = None) -> Builds:
    settings = Settings.model_validate({"networks": networks})
    scheduler = Scheduler(ratios=Ratios(1.0, 1.0, 1.0), subset_size=1)
    return Builds(pool, bus or RecordingBus(), scheduler, settings)  # type: ignore[arg-type]


async def _scheduling(pool: asyncpg.Pool, count: int = 1) -> list[uuid.UUID]:
    """Servers waiting for a host, as the gateway leaves them."""
    ids = [uuid.uuid4() for _ in range(count)]
    async with pool.acquire() as conn:
        for server_id in ids:
            await servers.insert(conn, ipam_builds.new_server(server_id))
    return ids


async def _build(pool: asyncpg.Pool, networks: str, server_id: uuid.UUID) -> int:
    """Build the server from a conductor on ``pool`` (a counting one); its round trips."""
    before = CountingConnection.round_trips
    await _builds(pool, networks).build(ipam_builds.build(server_id))
    return CountingConnection.round_trips - before


async def _addresses(pool: asyncpg.Pool, server_id: uuid.UUID) -> dict[str, Any]:
    rows = await pool.fetch(
        "SELECT network, address FROM fixed_ips WHERE server_id = $1", server_id
    )
    return {row["network"]: row["address"] for row in rows}


async def _shown(pool: asyncpg.Pool, server_id: uuid.UUID) -> dict[str, Any]:
    rows = await pool.fetch(
        "SELECT network, address FROM server_addresses WHERE server_id = $1", server_id
    )
    return {row["network"]: row["address"] for row in rows}


async def _free(pool: asyncpg.Pool, network: str) -> list[Any]:
    rows = await pool.fetch(
        "SELECT address FROM free_addresses WHERE network = $1 ORDER BY address", network
    )
    return [row["address"] for row in rows]


async def _used(pool: asyncpg.Pool) -> Any:
    return await pool.fetchval("SELECT ram_mb_used FROM compute_hosts WHERE name = $1", HOST)


async def _warm(pool: asyncpg.Pool, networks: str) -> None:
    """Write the networks' free addresses (a first build's work) and give them back."""
    (warm,) = await _scheduling(pool)
    await _builds(pool, networks).build(ipam_builds.build(warm))
    await pool.execute("DELETE FROM servers WHERE id = $1", warm)  # its addresses are free again


async def test_a_server_placed_now_gets_an_address_on_every_network_in_one_round_trip(
    counted: asyncpg.Pool,
) -> None:
    networks = "one=10.91.0.0/24;two=10.92.0.0/24"
    await _warm(counted, networks)
    (server_id,) = await _scheduling(counted)

    assert await _build(counted, networks, server_id) == 1

    expected = {"one": IPv4Address("10.91.0.2"), "two": IPv4Address("10.92.0.2")}
    assert await _addresses(counted, server_id) == expected
    assert await _shown(counted, server_id) == expected
    row = await servers.get(counted, server_id, None)
    assert row is not None and (row.task_state, row.host) == ("spawning", HOST)
    assert IPv4Address("10.91.0.2") not in await _free(counted, "one")


async def test_a_network_without_free_rows_yet_is_allocated_the_long_way(
    counted: asyncpg.Pool,
) -> None:
    """The first build of a network finds no free row: the placement takes what it can (the
    warm network), the rest is written and taken in the long way's transaction."""
    await _warm(counted, "warm=10.93.0.0/24")
    networks = "cold=10.94.0.0/24;warm=10.93.0.0/24"
    (server_id,) = await _scheduling(counted)

    assert await _build(counted, networks, server_id) > 1

    expected = {"cold": IPv4Address("10.94.0.2"), "warm": IPv4Address("10.93.0.2")}
    assert await _addresses(counted, server_id) == expected
    assert await _shown(counted, server_id) == expected


async def test_a_stale_free_row_met_by_the_placement_is_dropped_and_the_next_taken(
    counted: asyncpg.Pool,
) -> None:
    networks = "stale=10.95.0.0/29"
    first, second = await _scheduling(counted, 2)
    await _build(counted, networks, first)  # the long way: writes the free rows, takes .2
    await counted.execute(
        "INSERT INTO free_addresses (network, address) VALUES ('stale', '10.95.0.2')"
    )
    await _build(counted, networks, second)
    assert await _addresses(counted, first) == {"stale": IPv4Address("10.95.0.2")}
    assert await _addresses(counted, second) == {"stale": IPv4Address("10.95.0.3")}
    assert IPv4Address("10.95.0.2") not in await _free(counted, "stale")


async def test_a_build_delivered_again_takes_nothing_twice(counted: asyncpg.Pool) -> None:
    networks = "again=10.96.0.0/24"
    await _warm(counted, networks)
    (server_id,) = await _scheduling(counted)
    bus = RecordingBus()
    request = ipam_builds.build(server_id)
    await _builds(counted, networks, bus).build(request)
    free, used = await _free(counted, "again"), await _used(counted)

    await _builds(counted, networks, bus).build(request)  # the same build, delivered again

    assert [type(sent).__name__ for _, sent in bus.sent] == ["SpawnServer", "SpawnServer"]
    assert await _addresses(counted, server_id) == {"again": IPv4Address("10.96.0.2")}
    assert await _free(counted, "again") == free  # nothing taken, nothing given back
    assert await _used(counted) == used  # nothing claimed twice


async def test_four_conductors_building_on_a_tight_network_give_each_address_once(
    conductors: list[asyncpg.Pool],
) -> None:
    """Whole builds, placement and all, from four conductors at once on a /28 whose free rows
    are written: the placements take addresses until none is left free, the rest go the long
    way and fail with the full network's fault, giving their host claim back."""
    networks = "tight=10.97.0.0/28"  # .2 to .14: thirteen addresses
    usable = [IPv4Address("10.97.0.2") + i for i in range(13)]
    await _warm(conductors[0], networks)
    used_before = await _used(conductors[0])
    ids = await _scheduling(conductors[0], 40)
    bus = RecordingBus()
    await asyncio.gather(
        *(
            _builds(conductors[i % 4], networks, bus).build(ipam_builds.build(sid))
            for i, sid in enumerate(ids)
        )
    )

    held = await conductors[0].fetch(
        "SELECT address, server_id FROM fixed_ips WHERE network = 'tight'"
    )
    assert sorted(row["address"] for row in held) == usable
    winners = {row["server_id"] for row in held}
    assert len(winners) == 13 and len(bus.sent) == 13
    assert await _free(conductors[0], "tight") == []
    for sid in set(ids) - winners:
        row = await servers.get(conductors[0], sid, None)
        assert row is not None
        assert (row.vm_state, row.task_state, row.host, row.addresses) == ("error", None, None, [])
        assert row.fault is not None
        assert row.fault["message"] == "No more fixed IP addresses available on network tight."
    assert await _used(conductors[0]) - used_before == 13 * 512  # the failed gave theirs back
