"""Queries on ``actions``, the audit trail: every accepted action is a row before a message."""

from __future__ import annotations

import uuid

import asyncpg

from shared.db.group_commit import GroupCommit
from shared.db.pool import Conn, Executor
from shared.db.records import Action, PendingActions


async def record(
    conn: Executor,
    *,
    action_id: uuid.UUID,
    request_id: str,
    server_id: uuid.UUID,
    action: str,
    tenant_id: str,
    user_id: str,
    sent: bool = True,
) -> None:
    """A pending action; ``sent=False`` for one whose command is still to be published
    (the gateway's: ``mark_sent`` once the broker took it)."""
    await conn.execute(
        """INSERT INTO actions (id, request_id, server_id, action, tenant_id, user_id, sent)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        action_id,
        request_id,
        server_id,
        action,
        tenant_id,
        user_id,
        sent,
    )


async def mark_sent(conn: Executor, action_ids: list[uuid.UUID]) -> None:
    """The broker confirmed these actions' commands (migration 0023). The rows are locked in
    the order of their ids, as a conductor's grouped reports lock them
    (``servers.complete_awaited_tasks``): two writers of several actions each, locking in
    different orders, deadlocked, and a create whose mark lost was retried whole."""
    await conn.execute(
        """UPDATE actions SET sent = true
            WHERE id IN (SELECT id FROM actions WHERE id = ANY($1::uuid[])
                          ORDER BY id FOR UPDATE)""",
        action_ids,
    )


class SentMarks(GroupCommit[list[uuid.UUID], None]):
    """``mark_sent`` as a group commit (shared/db/group_commit.py): the marks of concurrent
    requests of a gateway go in one UPDATE, and each request still waits for its own."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool, _mark_all)

    async def mark(self, action_ids: list[uuid.UUID]) -> None:
        """Mark ``action_ids`` sent, with whatever other marks are asked for meanwhile."""
        await self.submit(action_ids)


async def _mark_all(conn: Conn, requests: list[list[uuid.UUID]]) -> list[None]:
    await mark_sent(conn, [i for ids in requests for i in ids])
    return [None] * len(requests)


async def unsent_pending(conn: Executor, server_id: uuid.UUID, untasked: list[str]) -> bool:
    """Whether the server's task belongs to a pending action whose command never reached
    the broker (its gateway died between its commit and the publish); ``untasked``: the
    actions that run beside any task, which say nothing about it."""
    return bool(
        await conn.fetchval(
            """SELECT 1 FROM actions WHERE server_id = $1 AND result = 'pending'
                  AND NOT sent AND action <> ALL($2::text[]) LIMIT 1""",
            server_id,
            untasked,
        )
    )


async def finish(
    conn: Executor, action_id: uuid.UUID, *, success: bool, message: str | None = None
) -> None:
    """Close a pending action; closing one twice (a redelivered report) changes nothing."""
    await conn.execute(
        """UPDATE actions SET result = $2, message = $3, finished_at = now()
            WHERE id = $1 AND result = 'pending'""",
        action_id,
        "success" if success else "error",
        message,
    )


async def fail(conn: Executor, action_id: uuid.UUID, message: str) -> None:
    """Close an action as failed whatever it came to: what it did was taken back (a
    multiple create the broker refused in part, whose first build may have finished)."""
    await conn.execute(
        """UPDATE actions SET result = 'error', message = $2,
                              finished_at = COALESCE(finished_at, now())
            WHERE id = $1""",
        action_id,
        message,
    )


async def is_pending(conn: Executor, action_id: uuid.UUID) -> bool:
    """Is the action still under way (recorded, not closed)?"""
    return bool(
        await conn.fetchval("SELECT 1 FROM actions WHERE id = $1 AND result = 'pending'", action_id)
    )


async def latest_pending(conn: Executor, server_id: uuid.UUID, action: str) -> uuid.UUID | None:
    """The server's most recent pending ``action`` (e.g. a delete), if any."""
    action_id: uuid.UUID | None = await conn.fetchval(
        """SELECT id FROM actions WHERE server_id = $1 AND action = $2
              AND result = 'pending' ORDER BY started_at DESC LIMIT 1""",
        server_id,
        action,
    )
    return action_id


# --- the audit trail as os-instance-actions shows it ----------------------------------------

_COLUMNS = """id, request_id, server_id, action, tenant_id, user_id, started_at, finished_at,
              result, message"""


async def list_for_server(conn: Executor, server_id: uuid.UUID) -> list[Action]:
    """Every action recorded for the server, newest first (as nova listed them)."""
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM actions WHERE server_id = $1
             ORDER BY started_at DESC, id DESC""",
        server_id,
    )
    return [Action.from_record(r) for r in rows]


async def get_by_request(conn: Executor, server_id: uuid.UUID, request_id: str) -> Action | None:
    """The server's action started by the request ``request_id`` (the first, should one
    request have started several)."""
    row = await conn.fetchrow(
        f"""SELECT {_COLUMNS} FROM actions WHERE server_id = $1 AND request_id = $2
             ORDER BY started_at, id LIMIT 1""",
        server_id,
        request_id,
    )
    return None if row is None else Action.from_record(row)


async def abandon_pending(
    conn: Executor,
    server_id: uuid.UUID,
    *,
    keep: uuid.UUID | None,
    untasked: list[str],
    message: str,
) -> int:
    """Close as failed the server's pending actions that run a task, but ``keep`` and the
    actions named in ``untasked`` (which run beside any task): their task was ended from
    outside (os-resetState, the reaper), so no report may finish them any more. Returns how
    many were closed."""
    closed: str = await conn.execute(
        """UPDATE actions SET result = 'error', message = $4, finished_at = now()
            WHERE server_id = $1 AND result = 'pending' AND id IS DISTINCT FROM $2
              AND action <> ALL($3::text[])""",
        server_id,
        keep,
        untasked,
        message,
    )
    return int(closed.rsplit(" ", 1)[-1])


async def pending_summary(conn: Executor) -> PendingActions:
    """How many actions are under way and how long ago the oldest began: what ``stratus
    status`` shows."""
    row = await conn.fetchrow(
        "SELECT count(*)::int AS count, now() - min(started_at) AS oldest_age FROM actions"
        " WHERE result = 'pending'"
    )
    assert row is not None  # an aggregate always returns a row
    return PendingActions.from_record(row)
