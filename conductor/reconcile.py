"""Reconciling the database with what a host really has.

While an agent is down, or when a message comes late, the database and a hypervisor drift
apart: a server deleted while its host looked dead (the gateway's or the reaper's delete in
the database alone) keeps its domain; a duplicate or late build recreates the domain of a
server deleted since; a host that was rebuilt or lost its disks no longer has servers the
database puts there. Two things set them right:

* every report of a host that names a server the database has deleted (an inventory, a
  periodic power report, a refused task report) makes the conductor tell that host to
  destroy the domain (``PurgeServers``), as nova reaped "running deleted instances";
* the agent reports every server it has (``HostInventory``) when it starts, before it takes
  any command, and again with every periodic report of all its servers' power: a server on
  that host that must have a domain there (running no task and not in ERROR or building, or
  running a task that works on its domain in place), unchanged since a little
  (``CLOCK_MARGIN``) before the host looked and yet missing, goes to ERROR with a fault that
  says so (its task, if any, abandoned as shared/db/abandon.py says).

A domain whose server the database does not know at all is left alone: it may belong to
another deployment sharing the hypervisor, and destroying what we did not create is not ours
to do.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import asyncpg

from shared import bus as bus_mod
from shared.bus import Bus
from shared.db import servers
from shared.db.abandon import abandon_task
from shared.messages import Fault, HostInventory, PurgeServers
from shared.states import TaskState, VmState

log = logging.getLogger(__name__)

#: vm_states in which a server running no task must have a domain on its host
_MUST_EXIST = ["active", "paused", "suspended", "stopped", "rescued", "resized"]

#: tasks that work on the server's domain where it is (a build, rebuild, resize, migration
#: or delete may rightly find none, or make one)
_IN_PLACE_TASKS = sorted(
    task.value
    for task in (
        TaskState.REBOOTING,
        TaskState.REBOOTING_HARD,
        TaskState.UPDATING_PASSWORD,
        TaskState.PAUSING,
        TaskState.UNPAUSING,
        TaskState.SUSPENDING,
        TaskState.RESUMING,
        TaskState.IMAGE_SNAPSHOT,
        TaskState.IMAGE_BACKUP,
        TaskState.POWERING_OFF,
        TaskState.POWERING_ON,
    )
)

_MISSING = """host = $1 AND deleted_at IS NULL AND updated_at < $2
              AND ((task_state IS NULL AND vm_state = ANY($3::text[]))
                   OR task_state = ANY($4::text[]))"""

#: The agents' clocks and PostgreSQL's differ a little: only a server unchanged for this long
#: before an observation may be judged by it (a server that reached ACTIVE just after the
#: host looked must not be found missing because the host's clock runs ahead).
CLOCK_MARGIN = timedelta(seconds=5)


@dataclass
class Reconciliation:
    purged: list[uuid.UUID] = field(default_factory=list)
    missing: list[uuid.UUID] = field(default_factory=list)


async def reconcile(pool: asyncpg.Pool, bus: Bus, inventory: HostInventory) -> Reconciliation:
    """Apply ``inventory`` (see the module's docstring); what was done."""
    done = Reconciliation()
    done.purged = await purge_deleted(pool, bus, inventory.host, inventory.servers)
    done.missing = await mark_missing(
        pool,
        inventory.host,
        inventory.observed_at,
        inventory.servers,
        found="found when its agent started",
    )
    return done


async def purge_deleted(
    pool: asyncpg.Pool, bus: Bus, host: str, server_ids: Sequence[uuid.UUID]
) -> list[uuid.UUID]:
    """Tell ``host`` to destroy the domains it reported of servers the database has deleted;
    which those were."""
    if not server_ids:
        return []
    rows = await pool.fetch(
        "SELECT id FROM servers WHERE id = ANY($1::uuid[]) AND deleted_at IS NOT NULL",
        list(server_ids),
    )
    deleted = sorted(r["id"] for r in rows)
    if deleted:
        log.warning(
            "host %s still has %d deleted server(s); destroying them: %s",
            host,
            len(deleted),
            ", ".join(map(str, deleted)),
        )
        await bus.publish(bus_mod.compute_queue(host), PurgeServers(host=host, servers=deleted))
    return deleted


async def mark_missing(
    pool: asyncpg.Pool,
    host: str,
    observed_at: datetime,
    present: Sequence[uuid.UUID],
    *,
    found: str,
) -> list[uuid.UUID]:
    """Put in ERROR the servers ``host`` should have and did not have at ``observed_at``
    (``present``: every server it had then): an agent's inventory, or one of its periodic
    reports of every server's power, which catches a server lost while its agent ran (a
    command failing on a domain that vanished restores the server's state, it does not
    know the domain is gone). ``found`` says how, for the fault. Which were put in ERROR."""
    before = observed_at - CLOCK_MARGIN
    rows = await pool.fetch(
        f"SELECT id FROM servers WHERE {_MISSING} AND id <> ALL($5::uuid[])",
        *_missing_args(host, before),
        list(present),
    )
    missing = []
    for row in rows:
        if await _set_missing_to_error(pool, row["id"], host, before, found):
            missing.append(row["id"])
    return missing


def _missing_args(host: str, before: datetime) -> tuple[object, ...]:
    return (host, before, _MUST_EXIST, _IN_PLACE_TASKS)


async def _set_missing_to_error(
    pool: asyncpg.Pool, server_id: uuid.UUID, host: str, before: datetime, found: str
) -> bool:
    """ERROR, if the server is still as it was when found missing (a report may have moved
    it on since: then it is not ours to judge)."""
    message = f"host {host} has no domain for this server ({found})"
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            f"SELECT * FROM servers WHERE id = $5 AND {_MISSING} FOR UPDATE",
            *_missing_args(host, before),
            server_id,
        )
        if row is None:
            return False
        if row["task_state"] is not None:
            await abandon_task(conn, row, VmState.ERROR, why=message)
        else:
            await servers.reset_state(conn, server_id, VmState.ERROR)
        await servers.add_fault(conn, server_id, Fault(code=500, message=message))
    log.warning("server %s is in ERROR: host %s does not have it", server_id, host)
    return True
