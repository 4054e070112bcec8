"""The asyncpg pool every service opens on start."""

from __future__ import annotations

import json
from typing import TypeAlias

import asyncpg
import asyncpg.pool
import pydantic_core

from shared import metrics

#: A connection: a bare one, or one borrowed from a pool.
Conn: TypeAlias = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
#: Anything a single query can run on: the pool itself or a connection.
Executor: TypeAlias = asyncpg.Pool | Conn


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb arrives as Python objects, not strings, wherever a query aggregates children
    await conn.set_type_codec(
        "jsonb", encoder=json.dumps, decoder=pydantic_core.from_json, schema="pg_catalog"
    )


class _Connection(asyncpg.Connection):
    """A pooled connection that skips the session reset query on release.

    asyncpg resets every connection it takes back (advisory locks, LISTEN, SET, cursors) with
    one more round trip per borrow. Stratus leaves no session state behind: its advisory locks
    are transaction-scoped, it never LISTENs or SETs, and an open transaction is still rolled
    back by the pool. So the round trip is pure cost on every request.
    """

    def get_reset_query(self) -> str:
        return ""


#: asyncpg's own bound on a connection attempt, kept when ``create_pool`` is given none.
_ASYNCPG_CONNECT_TIMEOUT_S = 60.0


async def create_pool(
    url: str,
    *,
    min_size: int = 2,
    max_size: int = 10,
    statement_timeout_s: float = 0,
    timeout_s: float = 0,
) -> asyncpg.Pool:
    """Open a pool on ``url``; statements are prepared once per connection and cached.
    ``statement_timeout_s`` (0: none) bounds every statement, lock waits included: PostgreSQL
    cancels one that runs longer (``asyncpg.QueryCanceledError``). That needs PostgreSQL to
    hear and be heard: across a network that drops packets a statement would wait for its
    answer as long as TCP keeps trying (many minutes), and a new connection as long as the
    connect timeout. ``timeout_s`` (0: asyncpg's defaults, none for statements) bounds both
    on our side: a connection attempt, and each statement and its cancellation, after which
    the connection is given up (``TimeoutError``, an ``OSError``: in ``UNAVAILABLE``)."""
    server_settings = {}
    if statement_timeout_s > 0:
        server_settings["statement_timeout"] = str(max(1, round(statement_timeout_s * 1000)))
    pool: asyncpg.Pool = await asyncpg.create_pool(
        url,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        connection_class=_Connection,
        server_settings=server_settings,
        timeout=timeout_s if timeout_s > 0 else _ASYNCPG_CONNECT_TIMEOUT_S,
        command_timeout=timeout_s if timeout_s > 0 else None,
    )
    metrics.POOLS.track(pool)  # its use is reported on /metrics
    return pool


#: Errors that mean "the database cannot serve us now" rather than "this query is wrong":
#: unreachable or restarting server, connection lost, out of connections, shutting down.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.OperatorInterventionError,
    asyncpg.InsufficientResourcesError,
    # a connection the server dropped while asyncpg was still reading an error's tail (a
    # fast shutdown's "terminating connection") is left mid-protocol, and its next statement
    # is refused by asyncpg itself ("cannot switch to state 15; another operation (2) is in
    # progress"): it is as unusable as a closed one
    asyncpg.InternalClientError,
)
