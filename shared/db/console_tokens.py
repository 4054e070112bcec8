"""Queries on ``console_tokens``: the tokens of console URLs (nova's consoleauth).

A token is kept as its SHA-256 only, and is good until its ``expires_at``, judged on
PostgreSQL's clock (every gateway agrees on it), for a server that still exists and is active:
a console URL of a server deleted or stopped since opens nothing.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

from shared.db.pool import Executor


@dataclass(frozen=True)
class ConsoleTarget:
    """What a valid token opens: the display of ``server_id`` at ``host``:``port``."""

    server_id: uuid.UUID
    console_type: str
    host: str
    port: int


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def insert(conn: Executor, token: str, target: ConsoleTarget, *, ttl_s: float) -> None:
    """Keep ``token`` for ``target`` for ``ttl_s`` seconds; expired tokens are removed on the
    way (there are few: one per console URL asked for, each gone within its TTL)."""
    await conn.execute("DELETE FROM console_tokens WHERE expires_at < now()")
    await conn.execute(
        """INSERT INTO console_tokens
               (token_sha256, server_id, console_type, host, port, expires_at)
           VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))""",
        _digest(token),
        target.server_id,
        target.console_type,
        target.host,
        target.port,
        ttl_s,
    )


async def find(conn: Executor, token: str) -> ConsoleTarget | None:
    """What ``token`` opens; None when it is unknown, expired, or its server is gone or no
    longer active."""
    row = await conn.fetchrow(
        """SELECT t.server_id, t.console_type, t.host, t.port
             FROM console_tokens t JOIN servers s ON s.id = t.server_id
            WHERE t.token_sha256 = $1 AND t.expires_at > now()
              AND s.deleted_at IS NULL AND s.vm_state = 'active'""",
        _digest(token),
    )
    if row is None:
        return None
    return ConsoleTarget(row["server_id"], row["console_type"], row["host"], row["port"])
