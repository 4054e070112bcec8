"""Queries on ``actions``, the audit trail: every accepted action is a row before a message."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from shared.db.pool import Executor
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
    """The broker confirmed these actions' commands (migration 0023)."""
    await conn.execute("UPDATE actions SET sent = true WHERE id = ANY($1::uuid[])", action_ids)


#: The actions of one request waiting for their mark, and what tells it the mark is made.
_Waiter = tuple[list[uuid.UUID], "asyncio.Future[None]"]


class SentMarks:
    """``mark_sent`` as a group commit: every request of a gateway marks its actions sent, one
    UPDATE (one round trip, a send and a receive for the gateway and PostgreSQL) each, when
    one UPDATE can mark them all. The marks asked for while an UPDATE is in flight go in the
    next one, together; each caller still waits for the UPDATE that holds its own marks, and
    gets its error should that UPDATE fail (the marks are made by a task of their own, so a
    caller that gives up waiting takes nobody else's mark with it).

    The UPDATEs of a busy spell share one borrowed connection: on a pool every request
    queues for, borrowing again for each would have every mark wait in that queue twice."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._waiting: list[_Waiter] = []
        self._flusher: asyncio.Task[None] | None = None

    async def mark(self, action_ids: list[uuid.UUID]) -> None:
        """Mark ``action_ids`` sent, with whatever other marks are asked for meanwhile."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((action_ids, done))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        await done

    async def _flush(self) -> None:
        """One UPDATE after the other, each for every mark waiting when it starts."""
        try:
            while self._waiting:
                await self._flush_on_one_connection()
        except asyncio.CancelledError:  # the gateway stops: nobody will make these marks
            _settle(self._take(), asyncio.CancelledError())
            raise
        finally:
            self._flusher = None

    async def _flush_on_one_connection(self) -> None:
        """Mark on one borrowed connection while marks keep coming; give it back after an
        UPDATE that failed (the connection may be what failed). Without a connection to
        be had, every mark waiting fails."""
        try:
            async with self._pool.acquire() as conn:
                while self._waiting:
                    batch = self._take()
                    try:
                        await mark_sent(conn, [i for ids, _ in batch for i in ids])
                    except Exception as exc:
                        _settle(batch, exc)
                        return
                    except asyncio.CancelledError:
                        _settle(batch, asyncio.CancelledError())
                        raise
                    _settle(batch, None)
        except Exception as exc:
            _settle(self._take(), exc)

    def _take(self) -> list[_Waiter]:
        batch, self._waiting = self._waiting, []
        return batch


def _settle(batch: list[_Waiter], outcome: BaseException | None) -> None:
    """Answer each caller still waiting: done, or ``outcome`` (cancelled, or the error)."""
    for _, done in batch:
        if done.done():
            continue
        if outcome is None:
            done.set_result(None)
        elif isinstance(outcome, asyncio.CancelledError):
            done.cancel()
        else:
            done.set_exception(outcome)


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
