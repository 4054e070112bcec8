"""Queries on ``flavor_extra_specs``: an administrator's key/value pairs on a flavor."""

from __future__ import annotations

from shared.db.pool import Executor


async def read(conn: Executor, flavor_id: str) -> dict[str, str]:
    rows = await conn.fetch(
        "SELECT key, value FROM flavor_extra_specs WHERE flavor_id = $1 ORDER BY key", flavor_id
    )
    return {row["key"]: row["value"] for row in rows}


async def upsert(conn: Executor, flavor_id: str, specs: dict[str, str]) -> None:
    """Set every key of ``specs`` (others are kept)."""
    await conn.executemany(
        "INSERT INTO flavor_extra_specs (flavor_id, key, value) VALUES ($1, $2, $3)"
        " ON CONFLICT (flavor_id, key) DO UPDATE SET value = EXCLUDED.value",
        [(flavor_id, key, value) for key, value in specs.items()],
    )


async def delete(conn: Executor, flavor_id: str, key: str) -> bool:
    """Remove one key; False when the flavor had no such key."""
    done = await conn.execute(
        "DELETE FROM flavor_extra_specs WHERE flavor_id = $1 AND key = $2", flavor_id, key
    )
    return bool(done != "DELETE 0")
