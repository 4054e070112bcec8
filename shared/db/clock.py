"""PostgreSQL's clock: the only one Stratus judges order by.

Hosts' clocks may be minutes off; rows are stamped by PostgreSQL (``updated_at``), so a moment
compared with them must be read from PostgreSQL too (conductor/reconcile.py).
"""

from __future__ import annotations

from datetime import datetime

from shared.db.pool import Executor


async def now(conn: Executor) -> datetime:
    """The present on PostgreSQL's clock (the wall clock, not the transaction's start)."""
    moment: datetime = await conn.fetchval("SELECT clock_timestamp()")
    return moment
