"""Queries on ``migrations``: the record of a server's resize between flavors and hosts.

A migration holds everything the later steps of its resize need (the server's spec as it was,
the new flavor, both hosts), so no step has to rebuild it from rows that may have changed
meanwhile. Its ``held`` column names the one claim the migration holds beside the server
row's (see the table's migration file); ``claims`` turns that into host and resources.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum

from shared.db import hosts
from shared.db.hosts import Resources
from shared.db.pool import Executor
from shared.db.records import Migration, MigrationRecord
from shared.messages import FlavorSpec, InstanceSpec


class Status(StrEnum):
    PRE_MIGRATING = "pre-migrating"
    MIGRATING = "migrating"
    POST_MIGRATING = "post-migrating"
    FINISHED = "finished"
    REVERTING = "reverting"
    CONFIRMED = "confirmed"
    REVERTED = "reverted"
    ERROR = "error"


class Held(StrEnum):
    SOURCE = "source"
    DEST = "dest"


#: Statuses of a resize that has not ended (the table allows one per server).
OPEN = frozenset(
    {
        Status.PRE_MIGRATING,
        Status.MIGRATING,
        Status.POST_MIGRATING,
        Status.FINISHED,
        Status.REVERTING,
    }
)

_COLUMNS = """id, server_id, action_id, source_host, dest_host, old_flavor_id, new_flavor_id,
              instance, new_flavor, status, held, created_at, updated_at"""


@dataclass(frozen=True)
class NewMigration:
    id: uuid.UUID
    server_id: uuid.UUID
    action_id: uuid.UUID
    source_host: str
    instance: InstanceSpec
    new_flavor: FlavorSpec


async def insert(conn: Executor, migration: NewMigration) -> None:
    """Record an accepted resize, not placed yet (``pre-migrating``, no destination)."""
    await conn.execute(
        f"""INSERT INTO migrations ({_COLUMNS})
            VALUES ($1, $2, $3, $4, NULL, $5, $6, $7, $8, $9, NULL, now(), now())""",
        migration.id,
        migration.server_id,
        migration.action_id,
        migration.source_host,
        migration.instance.flavor.id,
        migration.new_flavor.id,
        migration.instance.model_dump(mode="json"),
        migration.new_flavor.model_dump(mode="json"),
        Status.PRE_MIGRATING.value,
    )


async def get(conn: Executor, migration_id: uuid.UUID) -> Migration | None:
    """The resize, locked until the transaction ends (callers decide on it)."""
    row = await conn.fetchrow(
        f"SELECT {Migration.COLUMNS} FROM migrations WHERE id = $1 AND kind = 'resize' FOR UPDATE",
        migration_id,
    )
    return None if row is None else Migration.from_record(row)


async def open_for(conn: Executor, server_id: uuid.UUID) -> Migration | None:
    """The server's resize that has not ended, locked; None when there is none."""
    row = await conn.fetchrow(
        f"""SELECT {Migration.COLUMNS} FROM migrations
             WHERE server_id = $1 AND status = ANY($2::text[])
               FOR UPDATE""",
        server_id,
        sorted(OPEN),
    )
    return None if row is None else Migration.from_record(row)


async def latest(conn: Executor, server_id: uuid.UUID) -> Migration | None:
    """The server's most recent migration, whatever its status."""
    row = await conn.fetchrow(
        f"""SELECT {Migration.COLUMNS} FROM migrations WHERE server_id = $1
             ORDER BY created_at DESC LIMIT 1""",
        server_id,
    )
    return None if row is None else Migration.from_record(row)


async def place(conn: Executor, migration_id: uuid.UUID, dest_host: str) -> None:
    """The conductor claimed the new flavor on ``dest_host``: the migration holds that claim."""
    await conn.execute(
        "UPDATE migrations SET dest_host = $2, status = $3, held = $4 WHERE id = $1",
        migration_id,
        dest_host,
        Status.MIGRATING.value,
        Held.DEST.value,
    )


async def set_state(
    conn: Executor, migration_id: uuid.UUID, status: StrEnum, held: Held | None
) -> None:
    """Move a migration of either kind to ``status`` (its kind's: ``Status`` here, or
    shared/db/live_migrations.py's), holding the claim ``held``."""
    await conn.execute(
        "UPDATE migrations SET status = $2, held = $3 WHERE id = $1",
        migration_id,
        status.value,
        held.value if held is not None else None,
    )


async def discard(conn: Executor, migration_id: uuid.UUID) -> None:
    """Forget a resize that was never sent (its command could not be queued)."""
    await conn.execute(
        "DELETE FROM migrations WHERE id = $1 AND status = $2",
        migration_id,
        Status.PRE_MIGRATING.value,
    )


async def abandon(conn: Executor, row: Migration) -> str:
    """End the open resize ``row`` (locked) as failed, because its server's task was ended
    from outside (shared/db/abandon.py); what was done, for the record.

    A claim its destination never used is given back: placed, but only the source was told
    (``migrating``), the destination holds nothing yet. Any other claim stays with the
    record while a host may still keep that copy of the server: deleting the server frees
    it (the migrations table's trigger)."""
    held = Held(row.held) if row.held is not None else None
    released = ""
    if row.status == Status.MIGRATING and held is Held.DEST:
        dest, claim = new_claim(row)
        await hosts.release(conn, dest, claim)
        held = None
        released = f", its claim on {dest} released"
    await set_state(conn, row.id, Status.ERROR, held)
    return f"migration {row.id} ({row.status}) ended{released}"


def instance_before(row: MigrationRecord) -> InstanceSpec:
    """The server as it was, with its old flavor."""
    return InstanceSpec.model_validate(row.instance)


def new_flavor(row: Migration) -> FlavorSpec:
    return FlavorSpec.model_validate(row.new_flavor)


def instance_after(row: Migration) -> InstanceSpec:
    """The server with its new flavor."""
    return instance_before(row).model_copy(update={"flavor": new_flavor(row)})


def resources(flavor: FlavorSpec) -> Resources:
    return Resources(flavor.vcpus, flavor.ram_mb, flavor.disk_gb)


def old_claim(row: MigrationRecord) -> tuple[str, Resources]:
    """The old flavor on the source host."""
    return row.source_host, resources(instance_before(row).flavor)


def new_claim(row: Migration) -> tuple[str, Resources]:
    """The new flavor on the destination host."""
    return row.placed_dest, resources(new_flavor(row))


def same_host(row: MigrationRecord) -> bool:
    return row.source_host == row.dest_host


async def originals_elsewhere(
    conn: Executor, server_id: uuid.UUID, current_host: str | None
) -> list[str]:
    """Source hosts that still keep the server's original (a resize to another host not
    confirmed, or whose confirm failed), other than ``current_host``."""
    rows = await conn.fetch(
        """SELECT DISTINCT source_host FROM migrations
            WHERE server_id = $1 AND held = 'source' AND source_host <> dest_host
              AND source_host IS DISTINCT FROM $2""",
        server_id,
        current_host,
    )
    return [r["source_host"] for r in rows]
