"""Fixed addresses from the free-address table (issue 18): four conductors allocating at once
on a tight network never hand an address out twice, the surplus fails with the fault it
always had, and every way an address is given back makes it free again."""

from __future__ import annotations

import asyncio
import uuid
from ipaddress import IPv4Address, IPv6Address, ip_network
from typing import Any

import asyncpg
import pytest

from conductor import ipam
from shared.db import ipam as ipam_db
from shared.db import servers
from shared.db.abandon import delete_locally
from shared.networks import parse_networks
from tests.support import ipam_builds

HOST = "ipam-storm-host"
CONDUCTORS = 4


async def _storm(conductors: list[asyncpg.Pool], ids: list[uuid.UUID], networks: str) -> list[bool]:
    """Every build at once, spread over the conductors."""
    return list(
        await asyncio.gather(
            *(
                _build_on(conductors[i % len(conductors)], sid, networks)
                for i, sid in enumerate(ids)
            )
        )
    )


async def _held(pool: asyncpg.Pool, network: str) -> dict[Any, uuid.UUID]:
    rows = await pool.fetch("SELECT address, server_id FROM fixed_ips WHERE network = $1", network)
    return {row["address"]: row["server_id"] for row in rows}


async def _free(pool: asyncpg.Pool, network: str) -> list[Any]:
    rows = await pool.fetch(
        "SELECT address FROM free_addresses WHERE network = $1 ORDER BY address", network
    )
    return [row["address"] for row in rows]


async def _delete_all(pool: asyncpg.Pool, ids: list[uuid.UUID]) -> None:
    """Delete every server as the gateway deletes one no host holds (``delete_locally``)."""
    for sid in ids:
        async with pool.acquire() as conn, conn.transaction():
            row = await servers.lock(conn, sid, None)
            assert row is not None
            await delete_locally(conn, row)


async def _spawning(pool: asyncpg.Pool, count: int) -> list[uuid.UUID]:
    return await ipam_builds.spawning(pool, HOST, count)


async def _build_on(pool: asyncpg.Pool, server_id: uuid.UUID, networks: str) -> bool:
    return await ipam_builds.build_on(pool, server_id, networks, HOST)


async def test_four_conductors_on_a_tight_network_never_give_an_address_twice(
    conductors: list[asyncpg.Pool],
) -> None:
    networks = "tight=10.70.0.0/28"  # .2 to .14: thirteen addresses
    usable = [IPv4Address("10.70.0.2") + i for i in range(13)]
    ids = await _spawning(conductors[0], 40)

    built = await _storm(conductors, ids, networks)

    assert built.count(True) == 13
    held = await _held(conductors[0], "tight")
    assert sorted(held) == usable  # each address once (the primary key), every one given
    winners = {sid for sid, ok in zip(ids, built, strict=True) if ok}
    assert set(held.values()) == winners  # one address per built server, none for the others
    assert await _free(conductors[0], "tight") == []
    for sid in set(ids) - winners:  # the surplus failed as a full network always failed
        row = await servers.get(conductors[0], sid, None)
        assert row is not None
        assert (row.vm_state, row.task_state, row.host, row.addresses) == ("error", None, None, [])
        assert row.fault is not None
        assert row.fault["message"] == "No more fixed IP addresses available on network tight."
    used = await conductors[0].fetchrow(
        "SELECT vcpus_used, ram_mb_used FROM compute_hosts WHERE name = $1", HOST
    )
    assert used is not None and tuple(used) == (
        13,
        13 * 512,
    )  # the failed builds gave their host claim back
    shown = await conductors[0].fetchval(
        "SELECT count(*) FROM server_addresses WHERE network = 'tight'"
    )
    assert shown == 13

    await _delete_all(conductors[1], ids)
    assert await _held(conductors[0], "tight") == {}
    assert await _free(conductors[0], "tight") == usable  # the free table is whole again

    # and whole means usable: a second storm gets the same thirteen addresses
    again = await _spawning(conductors[0], 20)
    assert (await _storm(conductors, again, networks)).count(True) == 13
    assert sorted(await _held(conductors[0], "tight")) == usable


async def test_a_released_address_is_the_next_one_given(conductors: list[asyncpg.Pool]) -> None:
    networks = "reuse=10.71.0.0/24"
    first = await _spawning(conductors[0], 6)
    assert all(await _storm(conductors, first, networks))
    held = await _held(conductors[0], "reuse")
    freed = min(address for address, sid in held.items() if sid == first[3])

    async with conductors[2].acquire() as conn, conn.transaction():  # the server is deleted
        row = await servers.lock(conn, first[3], None)
        assert row is not None
        await delete_locally(conn, row)
    assert freed in await _free(conductors[0], "reuse")

    (later,) = await _spawning(conductors[0], 1)
    assert await _build_on(conductors[3], later, networks)
    assert (await _held(conductors[0], "reuse"))[freed] == later  # the lowest free: the freed
    assert freed not in await _free(conductors[0], "reuse")


async def test_a_rolled_back_build_gives_its_address_back(
    conductors: list[asyncpg.Pool],
) -> None:
    networks = "rollback=10.72.0.0/29"  # .2 to .6
    first, sid, other = await _spawning(conductors[0], 3)
    assert await _build_on(conductors[0], first, networks)  # .2; the free table is written
    taken = IPv4Address("10.72.0.3")

    class Crash(Exception):
        pass

    with pytest.raises(Crash):
        async with conductors[0].acquire() as conn, conn.transaction():
            await ipam.allocate(conn, sid, parse_networks(networks))
            assert await ipam_db.address_on(conn, sid, "rollback") == taken
            raise Crash  # the conductor dies mid-build: PostgreSQL rolls it all back

    assert list(await _held(conductors[0], "rollback")) == [IPv4Address("10.72.0.2")]
    assert taken in await _free(conductors[0], "rollback")
    assert await _build_on(conductors[1], other, networks)
    assert (await _held(conductors[0], "rollback"))[taken] == other


async def test_a_server_row_deleted_gives_its_addresses_back(
    conductors: list[asyncpg.Pool],
) -> None:
    """Addresses go with their server's row (ON DELETE CASCADE): free again all the same."""
    networks = "cascade=10.73.0.0/29;cascade6=fd00:73::/125"
    ids = await _spawning(conductors[0], 3)
    assert all(await _storm(conductors, ids, networks))
    await conductors[0].execute("DELETE FROM servers WHERE id = ANY($1::uuid[])", ids)
    assert await _free(conductors[0], "cascade") == [IPv4Address("10.73.0.2") + i for i in range(5)]
    assert await _free(conductors[0], "cascade6") == [
        IPv6Address("fd00:73::2") + i for i in range(6)
    ]


async def test_a_range_changed_between_runs_hands_out_only_the_new_range(
    conductors: list[asyncpg.Pool],
) -> None:
    old, new = "moving=10.74.0.0/24", "moving=10.75.0.0/30"  # the new one has .2 only
    (before,) = await _spawning(conductors[0], 1)
    assert await _build_on(conductors[0], before, old)
    assert await _free(conductors[0], "moving")  # the rest of 10.74.0.0/24 is written free

    during = await _spawning(conductors[0], 3)
    built = await _storm(conductors, during, new)
    assert sorted(built) == [False, False, True]
    held = await _held(conductors[0], "moving")
    assert sorted(held) == [IPv4Address("10.74.0.2"), IPv4Address("10.75.0.2")]
    assert await _free(conductors[0], "moving") == []  # the old range's were dropped

    # the old range's address, once given back, is not handed out under the new range
    async with conductors[0].acquire() as conn, conn.transaction():
        assert await ipam_db.release(conn, before) == 1
    (after,) = await _spawning(conductors[0], 1)
    assert not await _build_on(conductors[1], after, new)


async def test_a_large_network_is_written_a_chunk_at_a_time_as_allocators_go(
    conductors: list[asyncpg.Pool], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An IPv6 /64 cannot be written whole: chunks are written as the addresses run low
    (ahead of need, or by the allocators that ran out), and still no address goes twice and
    the lowest are taken."""
    monkeypatch.setattr(ipam, "CHUNK", 8)
    monkeypatch.setattr(ipam, "WRITE_AHEAD", 4)
    networks = "wide=fd00:74::/64"
    ids = await _spawning(conductors[0], 50)
    assert all(await _storm(conductors, ids, networks))
    held = await _held(conductors[0], "wide")
    assert sorted(held) == [IPv6Address("fd00:74::2") + i for i in range(50)]
    written = await conductors[0].fetchval(
        "SELECT filled_to FROM address_pools WHERE network = 'wide'"
    )
    assert IPv6Address("fd00:74::2") + 49 <= written < ip_network("fd00:74::/64")[2 + 50 + 3 * 8]


async def test_addresses_lost_from_the_free_table_are_found_before_the_network_is_full(
    conductors: list[asyncpg.Pool],
) -> None:
    networks = "lossy=10.76.0.0/29"  # .2 to .6
    ids = await _spawning(conductors[0], 6)
    assert await _build_on(conductors[0], ids[0], networks)
    await conductors[0].execute("DELETE FROM free_addresses WHERE network = 'lossy'")  # lost

    built = [
        await _build_on(conductors[i % CONDUCTORS], sid, networks) for i, sid in enumerate(ids[1:])
    ]
    assert built == [True, True, True, True, False]
    assert sorted(await _held(conductors[0], "lossy")) == [
        IPv4Address("10.76.0.2") + i for i in range(5)
    ]


async def test_an_address_being_taken_is_waited_for_before_the_network_is_called_full(
    conductors: list[asyncpg.Pool],
) -> None:
    """A network whose last free address another build is taking is full only if that build
    commits: rolled back, its address goes to the build that waited."""
    networks = "last=10.77.0.0/30"  # .2 only
    warm, first, second = await _spawning(conductors[0], 3)
    assert await _build_on(conductors[0], warm, networks)  # the free table is written
    await _delete_all(conductors[0], [warm])

    async with conductors[0].acquire() as conn:
        taking = conn.transaction()
        await taking.start()
        await ipam.allocate(conn, first, parse_networks(networks))  # .2, not committed
        waiting = asyncio.create_task(_build_on(conductors[1], second, networks))
        for _ in range(500):  # until the second build waits on the first's row lock
            blocked = await conductors[2].fetchval(
                """SELECT count(*) FROM pg_stat_activity
                    WHERE datname = current_database() AND wait_event_type = 'Lock'"""
            )
            if blocked:
                break
            await asyncio.sleep(0.01)
        assert blocked and not waiting.done()
        await taking.rollback()
    assert await waiting
    assert await _held(conductors[0], "last") == {IPv4Address("10.77.0.2"): second}


async def test_an_allocator_does_not_wait_for_another_in_flight(
    conductors: list[asyncpg.Pool],
) -> None:
    """The point of the free table: a build passes over the address another build is taking
    instead of waiting for that build's transaction (which a lock per network made it do)."""
    networks = "side=10.78.0.0/29"  # .2 to .6
    warm, first, second = await _spawning(conductors[0], 3)
    assert await _build_on(conductors[0], warm, networks)  # the free table is written
    await _delete_all(conductors[0], [warm])

    async with conductors[0].acquire() as conn, conn.transaction():
        await ipam.allocate(conn, first, parse_networks(networks))  # .2, not committed yet
        # blocked behind the open transaction, this would time out
        assert await asyncio.wait_for(_build_on(conductors[1], second, networks), timeout=5)
    held = await _held(conductors[0], "side")
    assert held == {IPv4Address("10.78.0.2"): first, IPv4Address("10.78.0.3"): second}


async def test_a_free_row_of_an_address_held_is_dropped_and_the_next_taken(
    conductors: list[asyncpg.Pool],
) -> None:
    """fixed_ips decides: a free row whose address is held (written beside a claim in
    flight) gives nothing, and is gone once met."""
    networks = "stale=10.79.0.0/29"  # .2 to .6
    first, second = await _spawning(conductors[0], 2)
    assert await _build_on(conductors[0], first, networks)
    await conductors[0].execute(
        "INSERT INTO free_addresses (network, address) VALUES ('stale', '10.79.0.2')"
    )
    assert await _build_on(conductors[1], second, networks)
    held = await _held(conductors[0], "stale")
    assert held == {IPv4Address("10.79.0.2"): first, IPv4Address("10.79.0.3"): second}
    assert IPv4Address("10.79.0.2") not in await _free(conductors[0], "stale")


async def test_a_build_delivered_twice_at_once_takes_one_address_and_gives_the_other_back(
    conductors: list[asyncpg.Pool],
) -> None:
    """A build's address is taken by one statement outside any transaction, which reads the
    address the server holds in its snapshot: a second delivery of the build that waited on
    the first's row lock does not see the address the first took, takes another, is refused
    by fixed_ips (one address a server and network) and gives it back."""
    networks = "twice=10.80.0.0/29"  # .2 to .6
    warm, server = await _spawning(conductors[0], 2)
    assert await _build_on(conductors[0], warm, networks)  # the free table is written
    await _delete_all(conductors[0], [warm])

    async with conductors[0].acquire() as conn:
        first = conn.transaction()
        await first.start()
        assert await servers.lock(conn, server, None) is not None
        await ipam.allocate(conn, server, parse_networks(networks))  # .2, not committed
        second = asyncio.create_task(_build_on(conductors[1], server, networks))
        for _ in range(500):  # until the second delivery waits on the first's row lock
            blocked = await conductors[2].fetchval(
                """SELECT count(*) FROM pg_stat_activity
                    WHERE datname = current_database() AND wait_event_type = 'Lock'"""
            )
            if blocked:
                break
            await asyncio.sleep(0.01)
        assert blocked and not second.done()
        await first.commit()
    assert await second
    assert await _held(conductors[0], "twice") == {IPv4Address("10.80.0.2"): server}
    free = await _free(conductors[0], "twice")
    assert free[0] == IPv4Address("10.80.0.3")  # given back: the next build's


async def test_a_build_of_a_server_deleted_meanwhile_takes_no_address(
    conductors: list[asyncpg.Pool],
) -> None:
    """The statement that takes a build's address locks the server's row and finds it
    gone: nothing is taken (a delete frees what the server holds; it held nothing)."""
    networks = "gone=10.81.0.0/29"
    warm, server = await _spawning(conductors[0], 2)
    assert await _build_on(conductors[0], warm, networks)
    await _delete_all(conductors[0], [server])
    assert await _build_on(conductors[1], server, networks) is False
    assert set((await _held(conductors[0], "gone")).values()) == {warm}
