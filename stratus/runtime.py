"""What every role's process needs: settings checks, database setup, waiting for a signal."""

from __future__ import annotations

import asyncio
import logging
import signal

import asyncpg

from shared.db import migrate, seed

log = logging.getLogger(__name__)


def require(value: str | None, name: str) -> str:
    if not value:
        raise SystemExit(f"stratus: {name} must be set for this command")
    return value


async def upgrade_database(url: str, on_applied: migrate.Applied | None = None) -> list[str]:
    """Apply pending migrations and seed the defaults; retries while PostgreSQL starts.
    ``on_applied`` hears of each migration as it is applied."""
    conn = await connect_with_retry(url)
    try:
        applied = await migrate.upgrade(conn, on_applied)
        await seed.seed_defaults(conn)
        return applied
    finally:
        await conn.close()


async def connect_with_retry(url: str, *, for_s: float = 60.0) -> asyncpg.Connection:
    deadline = asyncio.get_running_loop().time() + for_s
    while True:
        try:
            conn: asyncpg.Connection = await asyncpg.connect(url)
            return conn
        except (OSError, asyncpg.PostgresError) as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise
            log.warning("PostgreSQL not reachable (%s); retrying", exc)
            await asyncio.sleep(2)


async def wait_for_shutdown() -> None:
    """Return on SIGINT or SIGTERM (Ctrl-C or a container stop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
