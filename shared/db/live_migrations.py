"""Queries on ``migrations`` for live migrations (os-migrateLive, guide 3.1
`os-migrateLive`), and on the destination host they need: is it usable, has it room, claim
that room.

A live migration is a row of kind ``live-migration`` (migration 0007). Its status names the
step under way (``Status``, driven by conductor/live_migration.py); like a resize it holds
one claim beside the server row's, named by ``held`` (shared/db/server_migrations.py): the
destination's until the server is accounted there, then the source's until the source has
cleaned up. The flavor never changes, so either claim is the server's own resources.

The checks of the destination are here, in one place, because the gateway makes them to
answer 400 at once where it can and the conductor makes them again, authoritatively, when it
claims the room.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum

from shared.db import hosts, placement
from shared.db.hosts import Ratios, Resources
from shared.db.pool import Executor
from shared.db.records import LiveMigration, MigrationRecord
from shared.db.server_migrations import Held, set_state
from shared.db.sql import Params
from shared.messages import InstanceSpec

KIND = "live-migration"

#: nova's NoValidHost, which its os-migrateLive answered with 400: no host but the source can
#: take the server (a live migration without a named destination)
NO_VALID_HOST = "No valid host was found. There are not enough hosts available."


class Status(StrEnum):
    ACCEPTED = "accepted"  # recorded by the gateway; the conductor has not claimed yet
    PREPARING = "preparing"  # the destination's room is claimed; it prepares
    RUNNING = "running"  # the source migrates the running server
    ARRIVING = "arriving"  # the destination confirms the server runs there
    CLEANING = "cleaning"  # the server is accounted on the destination; the source cleans up
    RECOVERING = "recovering"  # it failed: the source makes sure the server runs there
    ROLLING_BACK = "rolling-back"  # the destination removes what it holds
    CONFIRMED = "confirmed"  # done: the server runs on the destination
    ERROR = "error"  # it did not happen (the server runs on the source, or is in ERROR)


#: Statuses of a live migration that has not ended (migration 0007's unique index).
UNDER_WAY = frozenset(Status) - {Status.CONFIRMED, Status.ERROR}

_COLUMNS = """id, server_id, action_id, source_host, dest_host, instance, status, held,
              block_migration, disk_over_commit, created_at, updated_at"""


@dataclass(frozen=True)
class NewLiveMigration:
    id: uuid.UUID
    server_id: uuid.UUID
    action_id: uuid.UUID
    source_host: str
    #: None: the conductor's scheduler picks it (``candidates``)
    dest_host: str | None
    instance: InstanceSpec
    block_migration: bool
    disk_over_commit: bool


async def insert(conn: Executor, migration: NewLiveMigration) -> None:
    """Record an accepted live migration (``accepted``: nothing claimed yet)."""
    flavor = migration.instance.flavor
    await conn.execute(
        f"""INSERT INTO migrations (kind, old_flavor_id, new_flavor_id, new_flavor, {_COLUMNS})
            VALUES ($1, $2, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, $11, $12, now(), now())""",
        KIND,
        flavor.id,
        flavor.model_dump(mode="json"),
        migration.id,
        migration.server_id,
        migration.action_id,
        migration.source_host,
        migration.dest_host,
        migration.instance.model_dump(mode="json"),
        Status.ACCEPTED.value,
        migration.block_migration,
        migration.disk_over_commit,
    )


async def get(conn: Executor, migration_id: uuid.UUID) -> LiveMigration | None:
    """The live migration, locked until the transaction ends (callers decide on it)."""
    row = await conn.fetchrow(
        f"SELECT {LiveMigration.COLUMNS} FROM migrations WHERE id = $1 AND kind = $2 FOR UPDATE",
        migration_id,
        KIND,
    )
    return None if row is None else LiveMigration.from_record(row)


async def discard(conn: Executor, migration_id: uuid.UUID) -> None:
    """Forget a live migration that was never sent (its command could not be queued)."""
    await conn.execute(
        "DELETE FROM migrations WHERE id = $1 AND kind = $2 AND status = $3",
        migration_id,
        KIND,
        Status.ACCEPTED.value,
    )


def instance(row: MigrationRecord) -> InstanceSpec:
    return InstanceSpec.model_validate(row.instance)


def resources(row: MigrationRecord) -> Resources:
    """What either claim of the migration is: the server's own flavor."""
    flavor = instance(row).flavor
    return Resources(flavor.vcpus, flavor.ram_mb, flavor.disk_gb)


async def release_held(conn: Executor, row: MigrationRecord) -> None:
    """Give back the claim the migration holds (none, the destination's or the source's)."""
    if row.held == Held.DEST:
        await hosts.release(conn, row.placed_dest, resources(row))
    elif row.held == Held.SOURCE:
        await hosts.release(conn, row.source_host, resources(row))


async def close_stale(conn: Executor, server_id: uuid.UUID) -> int:
    """End, as failed, the live migrations of a server that runs none (an os-resetState
    ended its task while one was under way), giving their claims back; how many there were.
    The caller holds the server's row lock and knows it runs no task."""
    rows = await conn.fetch(
        f"""SELECT {LiveMigration.COLUMNS} FROM migrations
             WHERE server_id = $1 AND kind = $2 AND status = ANY($3::text[])
               FOR UPDATE""",
        server_id,
        KIND,
        sorted(UNDER_WAY),
    )
    for row in rows:
        await abandon(conn, LiveMigration.from_record(row))
    return len(rows)


async def abandon(conn: Executor, row: MigrationRecord) -> None:
    """End the live migration ``row`` (locked) as failed, with the claim it holds: its
    server's task was ended from outside, or its server deleted, while it ran."""
    await release_held(conn, row)
    await set_state(conn, row.id, Status.ERROR, None)


# --- the destination -------------------------------------------------------------------------


async def target_refusal(
    conn: Executor, *, server_id: uuid.UUID, source: str, dest: str, down_after_s: float
) -> str | None:
    """Why the server cannot go from ``source`` to ``dest`` at all (the messages of the
    reference implementation, which answered 400); None when it may."""
    if dest == source:
        return f"Unable to migrate instance ({server_id}) to current host ({source})."
    rows = await conn.fetch(
        """SELECT name, hypervisor_type, enabled AND up
                  AND last_heartbeat >= now() - make_interval(secs => $2) AS usable
             FROM compute_hosts WHERE name = ANY($1::text[])""",
        [source, dest],
        down_after_s,
    )
    found = {r["name"]: r for r in rows}
    target = found.get(dest)
    if target is None:
        return f"Compute host {dest} could not be found."
    if not target["usable"]:
        return f"Compute service of {dest} is unavailable at this time."
    origin = found.get(source)
    if origin is not None and origin["hypervisor_type"] != target["hypervisor_type"]:
        return (
            f"Unable to migrate instance ({server_id}) to {dest}: its hypervisor "
            f"({target['hypervisor_type']}) is not the source's ({origin['hypervisor_type']})."
        )
    return None


def _no_room(dest: str, need: Resources) -> str:
    return (
        f"Host {dest} does not have room for the server ({need.vcpus} vCPUs, "
        f"{need.ram_mb} MB of RAM, {need.disk_gb} GB of disk)."
    )


async def room_refusal(
    conn: Executor, dest: str, need: Resources, ratios: Ratios, *, check_disk: bool
) -> str | None:
    """Why ``dest`` has no room for ``need`` now (a look, no claim); None when it has."""
    params = Params(dest)
    fits = await conn.fetchval(
        f"SELECT {hosts.fits(params, need, ratios, check_disk=check_disk)}"
        " FROM compute_hosts WHERE name = $1",
        *params.values,
    )
    return None if fits else _no_room(dest, need)


async def claim(
    conn: Executor, dest: str, need: Resources, ratios: Ratios, *, check_disk: bool
) -> str | None:
    """Add ``need`` to ``dest``'s usage if it still fits: one conditional UPDATE, so two
    conductors deciding at once cannot overcommit the host. None when claimed, else why
    not."""
    params = Params(dest, need.vcpus, need.ram_mb, need.disk_gb)
    status = await conn.execute(
        f"""UPDATE compute_hosts
               SET vcpus_used = vcpus_used + $2, ram_mb_used = ram_mb_used + $3,
                   disk_gb_used = disk_gb_used + $4
             WHERE name = $1 AND {hosts.fits(params, need, ratios, check_disk=check_disk)}""",
        *params.values,
    )
    return None if status == "UPDATE 1" else _no_room(dest, need)


async def candidates(
    conn: Executor,
    *,
    source: str,
    need: Resources,
    ratios: Ratios,
    check_disk: bool,
    limit: int = 20,
) -> list[str]:
    """The hosts the server could live-migrate to from ``source`` now, best first: the
    scheduler's filters and weighing (shared/db/placement.py: enabled and alive, room for
    ``need``, the most free RAM first), not the source, the source's hypervisor. A look,
    no claim: ``claim`` decides."""
    decision = placement.Decision(
        need=need,
        ratios=ratios,
        filters=[
            placement.AliveFilter(),
            placement.CapacityFilter(need, ratios, check_disk=check_disk),
            placement.ExcludeHostsFilter([source]),
            placement.SameHypervisorFilter(source),
        ],
        weighers=[placement.FreeRamWeigher(ratios.ram)],
    )
    return await placement.ranked_names(conn, decision, limit=limit)


async def set_dest(conn: Executor, migration_id: uuid.UUID, dest: str) -> None:
    """Record the destination the scheduler picked for the live migration (locked by the
    caller)."""
    await conn.execute(
        "UPDATE migrations SET dest_host = $2, updated_at = now() WHERE id = $1 AND kind = $3",
        migration_id,
        dest,
        KIND,
    )


async def hypervisor_uri(conn: Executor, host: str) -> str | None:
    """The libvirt URI ``host``'s agent reports (its heartbeats), for the source to reach."""
    uri: str | None = await conn.fetchval(
        "SELECT hypervisor_uri FROM compute_hosts WHERE name = $1", host
    )
    return uri
