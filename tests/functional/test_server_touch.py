"""The touch of a server by its child rows (migrations 0001 and 0025): metadata, addresses
and faults bump the server's version and updated_at, which changes-since and the detailed
list's page cache follow, but a server row its transaction wrote already is not written
again (its bump is there: a second would be a row version with an entry in every index)."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from stratus.system import System
from tests.conftest import IMAGE
from tests.support.actions import active_server
from tests.support.client import ComputeClient

_ADDRESS = (
    "INSERT INTO server_addresses (server_id, network, version, address) VALUES ($1, $2, 4, $3)"
)


async def _stamp(pool: asyncpg.Pool, server_id: uuid.UUID) -> tuple[int, datetime]:
    row = await pool.fetchrow("SELECT version, updated_at FROM servers WHERE id = $1", server_id)
    assert row is not None
    return row["version"], row["updated_at"]


async def test_a_child_row_alone_bumps_its_server(api: ComputeClient, system: System) -> None:
    assert system.pool is not None
    server_id = uuid.UUID(await active_server(api, "touched", IMAGE))
    version, updated_at = await _stamp(system.pool, server_id)
    await system.pool.execute(_ADDRESS, server_id, "extra", "192.0.2.7")
    after_version, after_updated_at = await _stamp(system.pool, server_id)
    assert after_version == version + 1
    assert after_updated_at > updated_at


async def test_a_server_written_in_the_transaction_is_bumped_once(
    api: ComputeClient, system: System
) -> None:
    assert system.pool is not None
    server_id = uuid.UUID(await active_server(api, "written", IMAGE))
    version, _ = await _stamp(system.pool, server_id)
    async with system.pool.acquire() as conn, conn.transaction():
        await conn.execute("UPDATE servers SET name = 'renamed' WHERE id = $1", server_id)
        await conn.execute(_ADDRESS, server_id, "extra", "192.0.2.7")
        await conn.execute(_ADDRESS, server_id, "other", "192.0.2.8")
        own = await conn.fetchval("SELECT version FROM servers WHERE id = $1", server_id)
    assert own == version + 1
    assert (await _stamp(system.pool, server_id))[0] == version + 1


async def test_a_write_in_a_savepoint_is_bumped_again(api: ComputeClient, system: System) -> None:
    """A subtransaction's row carries its own xid: the touch cannot tell it is ours and
    writes it again (one bump more, never one fewer)."""
    assert system.pool is not None
    server_id = uuid.UUID(await active_server(api, "saved", IMAGE))
    version, _ = await _stamp(system.pool, server_id)
    async with system.pool.acquire() as conn, conn.transaction():
        async with conn.transaction():
            await conn.execute("UPDATE servers SET name = 'renamed' WHERE id = $1", server_id)
        await conn.execute(_ADDRESS, server_id, "extra", "192.0.2.7")
    assert (await _stamp(system.pool, server_id))[0] == version + 2
