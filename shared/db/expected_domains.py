"""Queries on ``servers`` for the domains a host must have: those of the servers it holds
that run no task in a state with a domain (``DOMAIN_HELD_VM_STATES``), or run a task that
works on the domain in place (``IN_PLACE_TASKS``). A host that lacks one has lost the server
(conductor/reconcile.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from shared.db.pool import Conn, Executor
from shared.db.records import LOCKED_SERVER_COLUMNS, LockedServer
from shared.states import DOMAIN_HELD_VM_STATES, IN_PLACE_TASKS

_VM_STATES = sorted(state.value for state in DOMAIN_HELD_VM_STATES)
_TASKS = sorted(task.value for task in IN_PLACE_TASKS)

_MUST_HAVE_DOMAIN = """host = $1 AND deleted_at IS NULL
              AND ((task_state IS NULL AND vm_state = ANY($2::text[]))
                   OR task_state = ANY($3::text[]))"""


async def lacking(conn: Executor, host: str, present: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    """The servers that must have a domain on ``host`` and are not among ``present``, in
    order."""
    rows = await conn.fetch(
        f"SELECT id FROM servers WHERE {_MUST_HAVE_DOMAIN} AND id <> ALL($4::uuid[])",
        host,
        _VM_STATES,
        _TASKS,
        list(present),
    )
    return sorted(r["id"] for r in rows)


async def lock_if_unchanged(
    conn: Conn, server_id: uuid.UUID, host: str, since: datetime
) -> LockedServer | None:
    """The server's row, locked, if it still must have a domain on ``host`` and
    has not changed since ``since`` (PostgreSQL's clock); None otherwise."""
    row = await conn.fetchrow(
        f"""SELECT {LOCKED_SERVER_COLUMNS} FROM servers
             WHERE {_MUST_HAVE_DOMAIN} AND updated_at < $4 AND id = $5
               FOR UPDATE""",
        host,
        _VM_STATES,
        _TASKS,
        since,
        server_id,
    )
    return None if row is None else LockedServer.from_record(row)
