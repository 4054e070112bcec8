"""Scheduling in SQL: the right hosts are chosen, and racing conductors never overcommit."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from conductor.scheduler.scheduler import NoValidHost, Scheduler
from shared.db import hosts
from shared.db.hosts import Ratios, Resources
from shared.db.pool import create_pool
from shared.messages import HostCapacity
from tests.support.databases import fresh_database

TINY = Resources(vcpus=1, ram_mb=512, disk_gb=1)


@pytest.fixture
async def pool() -> AsyncIterator[asyncpg.Pool]:
    async with fresh_database() as url:
        the_pool = await create_pool(url, min_size=4, max_size=8)
        yield the_pool
        await the_pool.close()


def _scheduler(subset: int = 3) -> Scheduler:
    return Scheduler(ratios=Ratios(1.0, 1.0, 1.0), subset_size=subset)


async def _add_host(pool: asyncpg.Pool, name: str, ram_mb: int, vcpus: int = 64) -> None:
    await hosts.heartbeat(
        pool,
        name,
        HostCapacity(
            hypervisor_type="fake",
            hypervisor_uri="fake://",
            vcpus=vcpus,
            ram_mb=ram_mb,
            disk_gb=1000,
        ),
    )


async def _waiting_server(pool: asyncpg.Pool) -> uuid.UUID:
    server_id = uuid.uuid4()
    await pool.execute(
        """INSERT INTO servers (id, tenant_id, user_id, name, image_id, flavor_id, vcpus, ram_mb,
                                disk_gb, vm_state, task_state)
           VALUES ($1, 't', 'u', 's', $2, '1', 1, 512, 1, 'building', 'scheduling')""",
        server_id,
        uuid.uuid4(),
    )
    return server_id


async def test_the_host_with_most_free_ram_comes_first(pool: asyncpg.Pool) -> None:
    await _add_host(pool, "small", 1024)
    await _add_host(pool, "big", 8192)
    await _add_host(pool, "full", 512)
    await pool.execute("UPDATE compute_hosts SET ram_mb_used = 512 WHERE name = 'full'")
    async with pool.acquire() as conn:
        assert await _scheduler(subset=1).candidates(conn, TINY) == ["big", "small"]
        assert await _scheduler(subset=1).candidates(conn, TINY, exclude=["big"]) == ["small"]


async def test_dead_and_disabled_hosts_are_never_chosen(pool: asyncpg.Pool) -> None:
    """Dead: marked down by a conductor (conductor/hearing.py). A host that is only silent
    is not, yet: during a broker outage every host is, and runs on."""
    await _add_host(pool, "dead", 8192)
    await _add_host(pool, "disabled", 8192)
    await _add_host(pool, "alive", 1024)
    await pool.execute(
        """UPDATE compute_hosts SET last_heartbeat = now() - interval '1 hour', up = false
            WHERE name = 'dead'"""
    )
    await pool.execute("UPDATE compute_hosts SET enabled = false WHERE name = 'disabled'")
    async with pool.acquire() as conn:
        assert await _scheduler().candidates(conn, TINY) == ["alive"]
    await pool.execute(
        "UPDATE compute_hosts SET last_heartbeat = now() - interval '1 hour' WHERE name = 'alive'"
    )
    async with pool.acquire() as conn:
        assert await _scheduler().candidates(conn, TINY) == ["alive"]


async def test_no_room_anywhere_is_no_valid_host(pool: asyncpg.Pool) -> None:
    await _add_host(pool, "only", 256)
    server_id = await _waiting_server(pool)
    async with pool.acquire() as conn:
        with pytest.raises(NoValidHost):
            await _scheduler().claim_host(conn, server_id, TINY)
    assert await pool.fetchval("SELECT ram_mb_used FROM compute_hosts") == 0


async def test_a_deleted_server_is_not_placed_and_its_claim_is_rolled_back(
    pool: asyncpg.Pool,
) -> None:
    await _add_host(pool, "h", 4096)
    server_id = await _waiting_server(pool)
    await pool.execute("UPDATE servers SET deleted_at = now() WHERE id = $1", server_id)
    async with pool.acquire() as conn:
        assert await _scheduler().claim_host(conn, server_id, TINY) is None
    assert await pool.fetchval("SELECT ram_mb_used FROM compute_hosts") == 0


async def test_four_conductors_racing_never_overcommit_a_host(pool: asyncpg.Pool) -> None:
    # 10 hosts with room for 3 tiny servers each; 40 servers want a place
    for i in range(10):
        await _add_host(pool, f"tight-{i}", 3 * 512)
    servers = [await _waiting_server(pool) for _ in range(40)]
    conductors = [_scheduler() for _ in range(4)]
    placed: list[str] = []
    refused = 0

    async def conductor(index: int) -> None:
        nonlocal refused
        async with pool.acquire() as conn:
            for server_id in servers[index::4]:
                try:
                    host = await conductors[index].claim_host(conn, server_id, TINY)
                except NoValidHost:
                    refused += 1
                    continue
                assert host is not None
                placed.append(host)

    await asyncio.gather(*(conductor(i) for i in range(4)))
    assert len(placed) == 30 and refused == 10
    rows = await pool.fetch("SELECT ram_mb, ram_mb_used FROM compute_hosts")
    assert all(r["ram_mb_used"] <= r["ram_mb"] for r in rows)
    assert sum(r["ram_mb_used"] for r in rows) == 30 * 512
    assert await pool.fetchval("SELECT count(*) FROM servers WHERE host IS NOT NULL") == 30


async def test_contended_claims_fill_every_slot_and_refuse_only_when_the_cluster_is_full(
    pool: asyncpg.Pool,
) -> None:
    # 30 hosts with room for exactly 2 tiny servers each, 70 servers, 8 claims at a time:
    # each of the 60 slots is taken once, and only the 10 servers past them are refused (a
    # claim that loses a race to a busy host takes another one, it does not give up)
    for i in range(30):
        await _add_host(pool, f"pair-{i}", 2 * 512)
    waiting = [await _waiting_server(pool) for _ in range(70)]
    scheduler = _scheduler()
    outcomes: list[str | None] = []

    async def claimer(share: list[uuid.UUID]) -> None:
        async with pool.acquire() as conn:
            for server_id in share:
                try:
                    outcomes.append(await scheduler.claim_host(conn, server_id, TINY))
                except NoValidHost:
                    outcomes.append(None)

    await asyncio.gather(*(claimer(waiting[i::8]) for i in range(8)))
    placed = [host for host in outcomes if host is not None]
    assert len(placed) == 60
    assert all(placed.count(host) == 2 for host in set(placed))
    rows = await pool.fetch("SELECT ram_mb, ram_mb_used FROM compute_hosts")
    assert all(r["ram_mb_used"] == r["ram_mb"] for r in rows)


async def _claim_while_the_host_is_locked(
    pool: asyncpg.Pool, *, holder_takes_the_room: bool
) -> str | NoValidHost | None:
    """A claim started while another transaction holds the only host's row: what it ends
    with once that transaction commits (having claimed the host's last room, or not)."""
    server_id = await _waiting_server(pool)
    async with pool.acquire() as holder, holder.transaction():
        await holder.execute("SELECT 1 FROM compute_hosts WHERE name = 'only' FOR UPDATE")

        async def claim() -> str | NoValidHost | None:
            async with pool.acquire() as conn:
                try:
                    return await _scheduler().claim_host(conn, server_id, TINY)
                except NoValidHost as exc:
                    return exc

        claiming = asyncio.create_task(claim())
        await asyncio.sleep(0.2)
        assert not claiming.done()  # it waits for the row: no "no valid host" while locked
        if holder_takes_the_room:
            await holder.execute(
                "UPDATE compute_hosts SET ram_mb_used = ram_mb WHERE name = 'only'"
            )
    return await claiming


async def test_a_claim_that_finds_every_host_locked_waits_for_one(pool: asyncpg.Pool) -> None:
    await _add_host(pool, "only", 4096)
    assert await _claim_while_the_host_is_locked(pool, holder_takes_the_room=False) == "only"
    assert await pool.fetchval("SELECT ram_mb_used FROM compute_hosts") == 512


async def test_a_claim_that_waited_for_a_host_now_full_finds_no_valid_host(
    pool: asyncpg.Pool,
) -> None:
    await _add_host(pool, "only", 4096)
    outcome = await _claim_while_the_host_is_locked(pool, holder_takes_the_room=True)
    assert isinstance(outcome, NoValidHost)
    assert await pool.fetchval("SELECT ram_mb_used FROM compute_hosts") == 4096


async def test_a_claim_in_flight_holds_only_the_host_it_takes(pool: asyncpg.Pool) -> None:
    # two hosts, a subset of three: a claim whose transaction is still open locks the one
    # host it took, so another claim takes the other at once instead of waiting for it
    await _add_host(pool, "left", 4096)
    await _add_host(pool, "right", 4096)
    first, second = await _waiting_server(pool), await _waiting_server(pool)
    async with pool.acquire() as holder, holder.transaction():
        held = await _scheduler().claim_host(holder, first, TINY)

        async def claim() -> str | None:
            async with pool.acquire() as conn:
                return await _scheduler().claim_host(conn, second, TINY)

        other = await asyncio.wait_for(claim(), timeout=30)  # waiting would outlast this
    assert {held, other} == {"left", "right"}


async def test_a_claim_whose_best_hosts_are_all_held_takes_the_next_at_once(
    pool: asyncpg.Pool,
) -> None:
    # the subset of three best hosts all held by other decisions: the fourth best, not a wait
    for name, ram_mb in (("a", 8192), ("b", 8000), ("c", 7900), ("d", 1024), ("e", 900)):
        await _add_host(pool, name, ram_mb)
    server_id = await _waiting_server(pool)
    async with pool.acquire() as holder, holder.transaction():
        await holder.execute("SELECT 1 FROM compute_hosts WHERE name IN ('a', 'b', 'c') FOR UPDATE")

        async def claim() -> str | None:
            async with pool.acquire() as conn:
                return await _scheduler().claim_host(conn, server_id, TINY)

        assert await asyncio.wait_for(claim(), timeout=30) == "d"


async def test_a_decision_is_one_statement_that_reads_no_host_row_into_the_conductor(
    pool: asyncpg.Pool,
) -> None:
    await _add_host(pool, "one", 4096)
    server_id = await _waiting_server(pool)
    sql, values = _scheduler().placement_statement(server_id, TINY, (), skip_locked=True)
    async with pool.acquire() as conn, conn.transaction():
        plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {sql}", *values))
        row = await conn.fetchrow(sql, *values)
    assert "LockRows" in plan and "Update on compute_hosts" in plan
    # and the server as the statement found it (what a build used to read first)
    assert dict(row or {}) == {
        "waiting": True,
        "host": "one",
        "found": True,
        "task_state": "scheduling",
        "placed_on": None,
        "vcpus": 1,
        "ram_mb": 512,
        "disk_gb": 1,
    }
    placed = await pool.fetchrow("SELECT host, task_state FROM servers WHERE id = $1", server_id)
    assert dict(placed or {}) == {"host": "one", "task_state": "spawning"}


async def test_a_dry_run_answers_where_a_claim_would_go_without_writing_or_locking(
    pool: asyncpg.Pool,
) -> None:
    await _add_host(pool, "small", 1024)
    await _add_host(pool, "big", 2048)
    scheduler = _scheduler(subset=1)
    half = Resources(vcpus=1, ram_mb=1024, disk_gb=1)
    full = Resources(vcpus=2, ram_mb=2048, disk_gb=2)
    before = await pool.fetch("SELECT * FROM compute_hosts ORDER BY name")
    async with pool.acquire() as deciding, deciding.transaction():
        # another conductor's decision holds every host's row: a dry run does not wait for it
        await deciding.execute("SELECT name FROM compute_hosts FOR UPDATE")
        async with pool.acquire() as conn:
            assert await asyncio.wait_for(scheduler.preview(conn, half, planned={}), 5) == "big"
            # what a plan has placed already counts, as a claim would have
            assert await scheduler.preview(conn, half, planned={"big": half}) == "big"
            assert await scheduler.preview(conn, half, planned={"big": full}) == "small"
            assert await scheduler.preview(conn, half, planned={"big": half, "small": TINY}) == (
                "big"
            )
            assert await scheduler.preview(conn, half, planned={"big": full, "small": half}) is None
            # by the same filters: not a host it is told to avoid
            assert await scheduler.preview(conn, half, exclude=["big"], planned={}) == "small"
    assert await pool.fetch("SELECT * FROM compute_hosts ORDER BY name") == before
    # and its answer is the claim's own first choice, before and after a claim
    async with pool.acquire() as conn:
        for _ in range(2):
            expected = await scheduler.preview(conn, half, planned={})
            assert await scheduler.claim(conn, half) == expected == "big"
        assert await scheduler.preview(conn, half, planned={}) == "small"
