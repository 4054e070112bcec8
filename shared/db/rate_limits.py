"""Queries on ``rate_limit_counters``: the leaky buckets of the rate limits (guide 1.6.1).

The buckets live in PostgreSQL so that every gateway replica counts against the same ones.
A request's check is one statement (``stratus_rate_limit_take``, see migration 0004) that
drains, decides and charges all of the request's buckets atomically.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from shared.db.pool import Executor


@dataclass(frozen=True)
class Bucket:
    """What one limit asks of a request: its key, the seconds a request pours in, and the
    seconds the bucket holds."""

    key: str
    cost: float
    capacity: float


@dataclass(frozen=True)
class Outcome:
    key: str
    level: float  # seconds in the bucket before this request
    delay: float  # seconds until the request would fit; 0 if it was accepted


async def take(conn: Executor, user_id: str, buckets: Sequence[Bucket]) -> list[Outcome]:
    """Charge one request to every bucket, or to none if any of them is full."""
    rows = await conn.fetch(
        "SELECT limit_key, level, delay FROM stratus_rate_limit_take($1, $2, $3, $4)",
        user_id,
        [b.key for b in buckets],
        [b.cost for b in buckets],
        [b.capacity for b in buckets],
    )
    return [Outcome(r["limit_key"], r["level"], r["delay"]) for r in rows]


async def levels(
    conn: Executor, user_id: str, keys: Iterable[str]
) -> tuple[datetime, dict[str, float]]:
    """The database's clock and the drained level of each bucket ``user_id`` has (a bucket
    never used, or long drained, is absent: it is empty)."""
    rows = await conn.fetch(
        """SELECT now() AS moment, c.limit_key,
                  GREATEST(c.level - GREATEST(EXTRACT(EPOCH FROM now() - c.updated_at), 0), 0)
                      ::double precision AS level
             FROM (SELECT 1) AS one
             LEFT JOIN rate_limit_counters c
                    ON c.user_id = $1 AND c.limit_key = ANY ($2::text[])""",
        user_id,
        list(keys),
    )
    moment: datetime = rows[0]["moment"]
    return moment, {r["limit_key"]: r["level"] for r in rows if r["limit_key"] is not None}
