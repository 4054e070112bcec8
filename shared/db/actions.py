"""Queries on ``actions``, the audit trail: every accepted action is a row before a message."""

from __future__ import annotations

import uuid

from shared.db.pool import Executor


async def record(
    conn: Executor,
    *,
    action_id: uuid.UUID,
    request_id: str,
    server_id: uuid.UUID,
    action: str,
    tenant_id: str,
    user_id: str,
) -> None:
    await conn.execute(
        """INSERT INTO actions (id, request_id, server_id, action, tenant_id, user_id)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        action_id,
        request_id,
        server_id,
        action,
        tenant_id,
        user_id,
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


async def is_pending(conn: Executor, action_id: uuid.UUID) -> bool:
    """Is the action still under way (recorded, not closed)?"""
    return bool(
        await conn.fetchval("SELECT 1 FROM actions WHERE id = $1 AND result = 'pending'", action_id)
    )
