"""Queries on ``servers`` for what hypervisors say of their power, unasked.

The conductor judges an observation against the server's row (conductor/power_states.py):
these read just the columns that judgment needs, and record its outcome.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from shared.db.pool import Conn, Executor
from shared.db.records import ServerStates
from shared.states import PowerState, VmState

_COLUMNS = "id, host, vm_state, task_state, power_state, updated_at"


async def live_rows(conn: Executor, server_ids: Sequence[uuid.UUID]) -> list[ServerStates]:
    """The live servers among ``server_ids``."""
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM servers
            WHERE id = ANY($1::uuid[]) AND deleted_at IS NULL""",
        list(server_ids),
    )
    return [ServerStates.from_record(r) for r in rows]


async def lock(conn: Conn, server_id: uuid.UUID) -> ServerStates | None:
    """The live server's host, states and ``updated_at`` (the moment an observation must
    follow to be judged), locked until the transaction ends."""
    row = await conn.fetchrow(
        f"""SELECT {_COLUMNS} FROM servers
            WHERE id = $1 AND deleted_at IS NULL
              FOR UPDATE""",
        server_id,
    )
    return None if row is None else ServerStates.from_record(row)


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
