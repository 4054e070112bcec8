"""Transaction-scoped advisory locks: how writers of one thing (a project's quota, a user's
key pairs, a project's image uploads) take turns without a row to lock.

A lock's key has two parts: its class (one number per kind of thing, so kinds never collide)
and a hash of the thing's name. It is released when the transaction ends, so it is only taken
inside one; outside, it would be released at once and protect nothing.
"""

from __future__ import annotations

from shared.db.pool import Conn


async def hold(conn: Conn, lock_class: int, name: str, *, what: str) -> None:
    """Hold the lock ``(lock_class, name)`` until ``conn``'s transaction ends; ``what`` names
    it in the error raised when there is no transaction."""
    if not conn.is_in_transaction():
        raise RuntimeError(f"{what} is only held inside the transaction that needs it")
    await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", lock_class, name)
