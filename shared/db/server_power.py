"""Queries on ``servers`` for what hypervisors say of their power, unasked.

The conductor judges an observation against the server's row (conductor/power_states.py):
these read just the columns that judgment needs, and record its outcome.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from shared.db.pool import Conn, Executor
from shared.states import PowerState, VmState


async def live_rows(conn: Executor, server_ids: Sequence[uuid.UUID]) -> list[asyncpg.Record]:
    """The live servers among ``server_ids``: id, host, vm_state, task_state, power_state."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT id, host, vm_state, task_state, power_state FROM servers
            WHERE id = ANY($1::uuid[]) AND deleted_at IS NULL""",
        list(server_ids),
    )
    return rows


async def lock(conn: Conn, server_id: uuid.UUID) -> asyncpg.Record | None:
    """The live server's host, states and ``updated_at`` (the moment an observation must
    follow to be judged), locked until the transaction ends."""
    row: asyncpg.Record | None = await conn.fetchrow(
        """SELECT host, vm_state, task_state, power_state, updated_at FROM servers
            WHERE id = $1 AND deleted_at IS NULL
              FOR UPDATE""",
        server_id,
    )
    return row


async def record(
    conn: Executor, server_id: uuid.UUID, power: PowerState, vm_state: VmState
) -> None:
    """The server's power, and the vm_state it gives it, as its hypervisor saw them."""
    await conn.execute(
        "UPDATE servers SET power_state = $2, vm_state = $3 WHERE id = $1",
        server_id,
        int(power),
        vm_state.value,
    )
