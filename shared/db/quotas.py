"""What a project uses of its absolute limits, and the lock that makes quota checks safe.

Usage is counted from the ``servers`` table itself (live rows and the vCPUs/RAM each holds),
so it can never drift from the truth. Two creates in one project must not both see room for
one more server: whoever checks a quota first takes the project's advisory lock for the rest
of its transaction, so the next checker counts the first one's new row.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.db import locks
from shared.db.pool import Conn, Executor

#: First half of the two-part advisory lock key; the second is a hash of the project id.
_QUOTA_LOCK_CLASS = 0x51A70

#: Live servers of a project: every row not yet deleted, whatever its state. A resize that
#: is accepted but whose server does not hold its new flavor yet (migration pre-migrating or
#: migrating) counts with its growth already, so concurrent resizes cannot together pass.
_USAGE = """SELECT count(*) AS instances,
                   (COALESCE(sum(s.vcpus), 0) + COALESCE(sum(g.vcpus), 0))::integer AS cores,
                   (COALESCE(sum(s.ram_mb), 0) + COALESCE(sum(g.ram_mb), 0))::integer AS ram_mb
              FROM servers s
              LEFT JOIN LATERAL (
                   SELECT GREATEST((m.new_flavor ->> 'vcpus')::integer - s.vcpus, 0) AS vcpus,
                          GREATEST((m.new_flavor ->> 'ram_mb')::integer - s.ram_mb, 0) AS ram_mb
                     FROM migrations m
                    WHERE m.server_id = s.id AND m.status IN ('pre-migrating', 'migrating')
                   ) g ON true
             WHERE s.tenant_id = $1 AND s.deleted_at IS NULL"""


@dataclass(frozen=True)
class Usage:
    instances: int
    cores: int
    ram_mb: int


async def lock_project(conn: Conn, project_id: str) -> None:
    """Hold the project's quota lock until the transaction ends (never outside one)."""
    await locks.hold(conn, _QUOTA_LOCK_CLASS, project_id, what="a project's quota lock")


async def usage(conn: Executor, project_id: str) -> Usage:
    row = await conn.fetchrow(_USAGE, project_id)
    assert row is not None  # an aggregate always returns a row
    return Usage(row["instances"], row["cores"], row["ram_mb"])
