"""Queries on ``evacuations`` (migration 0022): servers rebuilt elsewhere because their host
is gone (nova's os-evacuate, ``stratus host evacuate``; conductor/evacuate.py), and whether a
host is gone at all.

The gateway records an evacuation (``accepted``) in the transaction that starts the action;
the conductor claims a destination and moves the server there (``placed``) or gives up
(``error``). A placed evacuation is what tells a returning source host's stale domain from a
server it really runs: the conductor has such a domain destroyed (``source-cleaned``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from shared.db.pool import Executor
from shared.db.records import Row
from shared.messages import InstanceSpec


class Status(StrEnum):
    ACCEPTED = "accepted"  # recorded by the gateway; no destination claimed yet
    PLACED = "placed"  # the server is accounted on dest_host, which rebuilds it
    ERROR = "error"  # it did not happen: no host had room (the server stays where it was)
    SOURCE_CLEANED = "source-cleaned"  # the returning source was told to destroy its copy


@dataclass(frozen=True, slots=True)
class Evacuation(Row):
    id: uuid.UUID
    server_id: uuid.UUID
    action_id: uuid.UUID
    source_host: str
    requested_host: str | None
    dest_host: str | None
    instance: InstanceSpec
    status: str


@dataclass(frozen=True)
class NewEvacuation:
    id: uuid.UUID
    server_id: uuid.UUID
    action_id: uuid.UUID
    source_host: str
    #: the request's ``host``; None: the conductor's scheduler picks one
    requested_host: str | None
    #: the server as it is: what the destination defines
    instance: InstanceSpec


_COLUMNS = "id, server_id, action_id, source_host, requested_host, dest_host, instance, status"


async def insert(conn: Executor, evacuation: NewEvacuation) -> None:
    """Record an accepted evacuation (nothing claimed yet)."""
    await conn.execute(
        f"""INSERT INTO evacuations ({_COLUMNS})
            VALUES ($1, $2, $3, $4, $5, NULL, $6, 'accepted')""",
        evacuation.id,
        evacuation.server_id,
        evacuation.action_id,
        evacuation.source_host,
        evacuation.requested_host,
        evacuation.instance.model_dump(mode="json"),
    )


async def discard(conn: Executor, evacuation_id: uuid.UUID) -> None:
    """Forget an evacuation whose command was never sent."""
    await conn.execute("DELETE FROM evacuations WHERE id = $1", evacuation_id)


async def get(conn: Executor, evacuation_id: uuid.UUID) -> Evacuation | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM evacuations WHERE id = $1", evacuation_id)
    if row is None:
        return None
    return Evacuation(
        id=row["id"],
        server_id=row["server_id"],
        action_id=row["action_id"],
        source_host=row["source_host"],
        requested_host=row["requested_host"],
        dest_host=row["dest_host"],
        instance=InstanceSpec.model_validate(row["instance"]),
        status=row["status"],
    )


async def set_placed(conn: Executor, evacuation_id: uuid.UUID, dest_host: str) -> None:
    await conn.execute(
        """UPDATE evacuations SET status = 'placed', dest_host = $2, updated_at = now()
            WHERE id = $1""",
        evacuation_id,
        dest_host,
    )


async def set_error(conn: Executor, evacuation_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE evacuations SET status = 'error', updated_at = now() WHERE id = $1",
        evacuation_id,
    )


async def stale_on(conn: Executor, host: str, server_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    """Those of ``server_ids`` (domains ``host`` reports) that were evacuated from ``host``
    and live elsewhere now (or were deleted since): stale copies, never to run again. A
    server evacuated and later moved back to ``host`` is not among them."""
    if not server_ids:
        return []
    rows = await conn.fetch(
        """SELECT DISTINCT e.server_id
             FROM evacuations e JOIN servers s ON s.id = e.server_id
            WHERE e.source_host = $1 AND e.status = 'placed'
              AND e.server_id = ANY($2::uuid[])
              AND (s.deleted_at IS NOT NULL OR s.host IS DISTINCT FROM $1)
            ORDER BY e.server_id""",
        host,
        list(server_ids),
    )
    return [r["server_id"] for r in rows]


async def mark_source_cleaned(conn: Executor, host: str, server_ids: Sequence[uuid.UUID]) -> None:
    """``host`` was told to destroy its copies of ``server_ids``: their evacuations are over
    for it (the purge is a durable command in its queue)."""
    await conn.execute(
        """UPDATE evacuations SET status = 'source-cleaned', updated_at = now()
            WHERE source_host = $1 AND status = 'placed' AND server_id = ANY($2::uuid[])""",
        host,
        list(server_ids),
    )
