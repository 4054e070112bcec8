"""A fresh PostgreSQL database per test session: the machine's server, else an embedded one."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg

from shared.db.embedded import EmbeddedPostgres
from stratus.runtime import upgrade_database

ADMIN_URL = os.environ.get(
    "STRATUS_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


async def _reachable(url: str) -> bool:
    try:
        conn = await asyncpg.connect(url, timeout=3)
    except (OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


def _with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` (keeps query parameters such as ``host``)."""
    head, _, query = url.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{name}" + (f"?{query}" if query else "")


@asynccontextmanager
async def fresh_database(*, migrated: bool = True) -> AsyncIterator[str]:
    """A new database, migrated unless told otherwise; dropped afterwards."""
    embedded = None
    admin_url = ADMIN_URL
    if not await _reachable(admin_url):
        tmp = Path(tempfile.mkdtemp(prefix="stratus-test-pg-"))
        embedded = EmbeddedPostgres(tmp / "pgdata")
        admin_url = await embedded.start()
    name = f"stratus_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(admin_url, name)
    try:
        if migrated:
            await upgrade_database(url)
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        if embedded is not None:
            await embedded.close()
