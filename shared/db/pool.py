"""The asyncpg pool every service opens on start."""

from __future__ import annotations

import json
from typing import Any, TypeAlias

import asyncpg
import asyncpg.pool
import pydantic_core

#: A connection: a bare one, or one borrowed from a pool.
Conn: TypeAlias = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
#: Anything a single query can run on: the pool itself or a connection.
Executor: TypeAlias = asyncpg.Pool | Conn


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb arrives as Python objects, not strings, wherever a query aggregates children
    await conn.set_type_codec(
        "jsonb", encoder=json.dumps, decoder=pydantic_core.from_json, schema="pg_catalog"
    )


async def create_pool(url: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    """Open a pool on ``url``; statements are prepared once per connection and cached."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        url, min_size=min_size, max_size=max_size, init=_init_connection
    )
    return pool


def row_dict(record: Any) -> dict[str, Any]:
    return dict(record.items())


#: Errors that mean "the database cannot serve us now" rather than "this query is wrong":
#: unreachable or restarting server, connection lost, out of connections, shutting down.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.OperatorInterventionError,
    asyncpg.InsufficientResourcesError,
)
