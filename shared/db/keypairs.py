"""Queries on ``key_pairs``: a user's key pairs (nova's os-keypairs), keyed by user and name.

Creating one counts the user's key pairs under the user's advisory lock (held until the
transaction ends), so two concurrent creates cannot together pass the quota.
"""

from __future__ import annotations

from shared.db import locks
from shared.db.pool import Conn, Executor
from shared.db.records import Keypair

#: First half of the two-part advisory lock key; the second is a hash of the user id.
_KEYPAIR_LOCK_CLASS = 0x6B7970

_COLUMNS = "user_id, name, fingerprint, public_key, created_at"


async def list_for_user(conn: Executor, user_id: str) -> list[Keypair]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM key_pairs WHERE user_id = $1 ORDER BY name", user_id
    )
    return [Keypair.from_record(row) for row in rows]


async def get(conn: Executor, user_id: str, name: str) -> Keypair | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM key_pairs WHERE user_id = $1 AND name = $2", user_id, name
    )
    return None if row is None else Keypair.from_record(row)


async def lock_user(conn: Conn, user_id: str) -> None:
    """Hold the user's key pair lock until the transaction ends (never outside one)."""
    await locks.hold(conn, _KEYPAIR_LOCK_CLASS, user_id, what="a user's key pair lock")


async def count(conn: Executor, user_id: str) -> int:
    n = await conn.fetchval("SELECT count(*) FROM key_pairs WHERE user_id = $1", user_id)
    return int(n)


async def insert(
    conn: Executor, user_id: str, name: str, fingerprint: str, public_key: str
) -> Keypair | None:
    """The new key pair; None when the user already has one of that name."""
    row = await conn.fetchrow(
        "INSERT INTO key_pairs (user_id, name, fingerprint, public_key) VALUES ($1, $2, $3, $4)"
        f" ON CONFLICT (user_id, name) DO NOTHING RETURNING {_COLUMNS}",
        user_id,
        name,
        fingerprint,
        public_key,
    )
    return None if row is None else Keypair.from_record(row)


async def delete(conn: Executor, user_id: str, name: str) -> bool:
    """Remove one; False when the user had no key pair of that name."""
    done = await conn.execute(
        "DELETE FROM key_pairs WHERE user_id = $1 AND name = $2", user_id, name
    )
    return bool(done != "DELETE 0")
