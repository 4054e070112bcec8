"""What every role's process needs: settings checks, database setup, waiting for a signal."""

from __future__ import annotations

import asyncio
import logging
import signal

import asyncpg

from shared.config import Settings
from shared.db import migrate, seed
from shared.sealing import Keyring, SealingError, local_key

log = logging.getLogger(__name__)


def require(value: str | None, name: str) -> str:
    if not value:
        raise SystemExit(f"stratus: {name} must be set for this command")
    return value


def require_keyring(settings: Settings) -> Keyring:
    """The message keyring of a role that seals or opens admin passwords (gateway, agent):
    without a usable STRATUS_MESSAGE_KEY it would fail every build, so it does not start."""
    try:
        return Keyring.from_setting(settings.message_key)
    except SealingError as exc:
        raise SystemExit(f"stratus: {exc}") from None


def with_local_message_key(settings: Settings) -> Settings:
    """``stratus up``'s settings with a message key: STRATUS_MESSAGE_KEY when set, else the
    one kept in the data directory (made on the first start)."""
    if settings.message_key is not None:
        require_keyring(settings)
        return settings
    try:
        key = local_key(settings.data_dir / "message.key")
    except SealingError as exc:
        raise SystemExit(f"stratus: {exc}") from None
    return settings.model_copy(update={"message_key": key})


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
