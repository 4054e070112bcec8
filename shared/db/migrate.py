"""Ordered schema migrations: ``migrations/NNNN_name.sql`` applied once each, in order.

Run by ``stratus db upgrade`` and by ``stratus up``. An advisory lock makes concurrent
upgrades (two replicas starting together) wait for each other instead of racing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from importlib import resources

import asyncpg

log = logging.getLogger(__name__)

_LOCK_KEY = 0x5712A705  # any constant shared by every Stratus process


def available_migrations() -> list[tuple[int, str, str]]:
    """(version, file name, SQL) of every migration shipped with the package, in order."""
    found = []
    for entry in resources.files("shared.db").joinpath("migrations").iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


#: told (file name, seconds it took) after each migration is applied
Applied = Callable[[str, float], None]


async def upgrade(conn: asyncpg.Connection, on_applied: Applied | None = None) -> list[str]:
    """Apply the migrations this database lacks; return the names applied. ``on_applied``
    hears of each as it is done, so that an operator sees a long upgrade move."""
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        applied = []
        for version, name, sql in available_migrations():
            if version in done:
                continue
            started = time.monotonic()
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
                )
            log.info("applied migration %s", name)
            applied.append(name)
            if on_applied is not None:
                on_applied(name, time.monotonic() - started)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)


async def upgrade_url(url: str) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        return await upgrade(conn)
    finally:
        await conn.close()
