"""Reconciling the database with what a host really has.

While an agent is down, or when a message comes late, the database and a hypervisor drift
apart: a server deleted while its host looked dead (the gateway's or the reaper's delete in
the database alone) keeps its domain; a duplicate or late build recreates the domain of a
server deleted since; a host that was rebuilt or lost its disks no longer has servers the
database puts there; a guest changes its power on its own. Three things set them right:

* every report of a host that names a server the database has deleted (an inventory, a
  power report, a probe's answer, a refused task report) makes the conductor tell that host
  to destroy the domain (``PurgeServers``), as nova reaped "running deleted instances"; a
  deleted server stays deleted, so this needs to know nothing of when the host looked;
* a server on a host that must have a domain there (running no task and not in ERROR or
  building, or running a task that works on its domain in place), missing when the host
  looked after the server's last change, goes to ERROR with a fault that says so (its task,
  if any, abandoned as shared/db/abandon.py says);
* a server's power follows what its hypervisor saw after its last change
  (conductor/power_states.py).

The last two need to know that the host looked *after* the server last changed, and no
clock of the host's can tell: PostgreSQL stamps ``updated_at``, and an agent's clock may be
minutes off. Ahead, a server that reached ACTIVE just after the host looked seems older than
the look, and goes to ERROR; behind, a look seems older than every recent change, so a lost
server is not judged and a guest that stopped is not shown SHUTOFF for minutes, while a
stale power state may undo a newer one. So what an agent reports unasked (its inventory when
it starts, ``HostInventory``; its power reports, ``PowerStateReport``) is a hint. The servers
a hint lacks, or whose power it says would change, are probed (``ProbeServers``), stamped
``probe_at`` with PostgreSQL's clock as the probe is sent. The agent looks once the probe has
arrived, necessarily later, and answers which of them it has, with their power
(``ProbeReport``). A server is judged by the answer only if its ``updated_at`` is before
``probe_at``: both on PostgreSQL's clock, and the message carried the order between them.

``updated_at`` is the start of the transaction that last changed the row, which may commit
after ``probe_at``; what such a change records happened before it began (a host's report of
work already done, or a task set before its command is sent, which the judgment respects),
so the look, after ``probe_at``, cannot predate it. A probe answered twice judges twice: the
servers put in ERROR by the first no longer must have a domain, and a power already applied
is nothing new, so the second changes nothing. A hint that cannot be judged costs a probe,
never a wrong state: its servers are asked about again by the next periodic report.

A domain whose server the database does not know at all is left alone: it may belong to
another deployment sharing the hypervisor, and destroying what we did not create is not ours
to do.

A server evacuated from a host while it was gone (conductor/evacuate.py) is, to that host,
like a deleted one: it lives elsewhere now, so every report of the returning host that names
it gets its stale domain destroyed by the same ``PurgeServers``, never started (nothing here
or on the agent starts a domain it finds: an agent only reports what it has). The evacuation
record says which copies are stale, so a server moved back to the host later is not one.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from conductor.power_states import apply_probed_power, disagreements
from shared.bus import Bus
from shared.db import clock, evacuations, expected_domains, servers
from shared.db.abandon import abandon_task
from shared.messages import (
    Fault,
    HostInventory,
    PowerStateReport,
    ProbeCause,
    ProbeReport,
)
from shared.rpcapi import ComputeClient
from shared.states import VmState

log = logging.getLogger(__name__)

#: how a server found missing was found, as its fault says
_FOUND: dict[str, str] = {
    "agent_started": "found when its agent started",
    "periodic_check": "found missing by a periodic check",
}


@dataclass
class Reconciliation:
    #: deleted (or evacuated) servers whose domains the host was told to destroy
    purged: list[uuid.UUID] = field(default_factory=list)
    #: servers the host was asked about
    probed: list[uuid.UUID] = field(default_factory=list)
    #: servers put in ERROR: the host had no domain for them
    missing: list[uuid.UUID] = field(default_factory=list)


async def reconcile(pool: asyncpg.Pool, bus: Bus, inventory: HostInventory) -> Reconciliation:
    """Act on a starting agent's inventory (see the module's docstring); what was done."""
    done = Reconciliation()
    done.purged = await purge_deleted(pool, bus, inventory.host, inventory.servers)
    done.probed = await probe(
        pool,
        bus,
        inventory.host,
        await lacking(pool, inventory.host, inventory.servers),
        cause="agent_started",
        request_id=inventory.request_id,
    )
    return done


async def reconcile_power(pool: asyncpg.Pool, bus: Bus, report: PowerStateReport) -> Reconciliation:
    """Act on a power report as a hint: purge the deleted servers it names, and probe those
    whose power it says would change and, when it tells of every server, those it lacks."""
    seen = [observed.server_id for observed in report.servers]
    done = Reconciliation()
    done.purged = await purge_deleted(pool, bus, report.host, seen)
    candidates = await disagreements(pool, report.host, report.servers)
    if report.server_id is None:  # a report of every server the host has
        candidates += await lacking(pool, report.host, seen)
    done.probed = await probe(
        pool,
        bus,
        report.host,
        candidates,
        cause="periodic_check" if report.server_id is None else "power_change",
        request_id=report.request_id,
    )
    return done


async def apply_probe_report(pool: asyncpg.Pool, bus: Bus, report: ProbeReport) -> Reconciliation:
    """Judge the probed servers by what the host saw after ``report.probe_at``: the missing
    ones go to ERROR (unless one event asked: see below), the others' power is applied
    (conductor/power_states.py)."""
    found = {observed.server_id for observed in report.found}
    done = Reconciliation()
    done.purged = await purge_deleted(pool, bus, report.host, sorted(found))
    if report.cause != "power_change":
        # A domain that vanished under one lifecycle event only loses its power (NOSTATE):
        # a hard reboot brings it back, as nova's power sync left it. The next check of
        # every server, or the agent's next start, judges it missing if it is still gone.
        absent = [server_id for server_id in report.servers if server_id not in found]
        done.missing = await mark_missing(
            pool, report.host, report.probe_at, absent, found=_FOUND[report.cause]
        )
    await apply_probed_power(pool, report)
    return done


async def purge_deleted(
    pool: asyncpg.Pool, bus: Bus, host: str, server_ids: Sequence[uuid.UUID]
) -> list[uuid.UUID]:
    """Tell ``host`` to destroy the domains it reported of servers the database has deleted,
    or evacuated from it to another host while it was gone; which those were."""
    if not server_ids:
        return []
    deleted = await servers.deleted_among(pool, server_ids)
    evacuated = [s for s in await evacuations.stale_on(pool, host, server_ids) if s not in deleted]
    stale = sorted({*deleted, *evacuated})
    if deleted:
        log.warning(
            "host %s still has %d deleted server(s); destroying them: %s",
            host,
            len(deleted),
            ", ".join(map(str, deleted)),
        )
    if evacuated:
        log.warning(
            "host %s still has %d server(s) evacuated from it; destroying them: %s",
            host,
            len(evacuated),
            ", ".join(map(str, evacuated)),
        )
    if stale:
        await ComputeClient(bus, host).purge_servers(stale)
    if evacuated:
        # only once the purge is queued: should the broker refuse it, the next report asks
        await evacuations.mark_source_cleaned(pool, host, evacuated)
    return stale


async def lacking(pool: asyncpg.Pool, host: str, present: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    """The servers that must have a domain on ``host`` and are not among ``present``, the
    servers a hint says it has. Not judged by the hint: any may have reached its state after
    the host looked."""
    return await expected_domains.lacking(pool, host, present)


async def probe(
    pool: asyncpg.Pool,
    bus: Bus,
    host: str,
    server_ids: Sequence[uuid.UUID],
    *,
    cause: ProbeCause,
    request_id: str,
) -> list[uuid.UUID]:
    """Ask ``host`` about ``server_ids`` (nothing when there are none); which were asked.

    ``probe_at`` is read from PostgreSQL just before publishing, so the agent's look follows
    it."""
    asked = sorted(set(server_ids))
    if not asked:
        return []
    probe_at = await clock.now(pool)
    await ComputeClient(bus, host).probe_servers(
        asked, probe_at=probe_at, cause=cause, request_id=request_id
    )
    log.info("asking host %s about %d server(s) (%s)", host, len(asked), cause)
    return asked


async def mark_missing(
    pool: asyncpg.Pool,
    host: str,
    probe_at: datetime,
    absent: Sequence[uuid.UUID],
    *,
    found: str,
) -> list[uuid.UUID]:
    """Put in ERROR those of ``absent`` (servers ``host`` had no domain for when it looked,
    after ``probe_at``) that must have one there and have not changed since before
    ``probe_at``. This also catches a server lost while its agent ran: a command failing on
    a domain that vanished restores the server's state, it does not know the domain is gone.
    ``found`` says how, for the fault. Which were put in ERROR."""
    missing = []
    for server_id in sorted(set(absent)):
        if await _set_missing_to_error(pool, server_id, host, probe_at, found):
            missing.append(server_id)
    return missing


async def _set_missing_to_error(
    pool: asyncpg.Pool, server_id: uuid.UUID, host: str, probe_at: datetime, found: str
) -> bool:
    """ERROR, if the server still must have a domain on ``host`` and is unchanged since
    before the probe (a report may have moved it on since: then it is not ours to judge)."""
    message = f"host {host} has no domain for this server ({found})"
    async with pool.acquire() as conn, conn.transaction():
        row = await expected_domains.lock_if_unchanged(conn, server_id, host, probe_at)
        if row is None:
            return False
        if row.task_state is not None:
            await abandon_task(conn, row, VmState.ERROR, why=message)
        else:
            await servers.reset_state(conn, server_id, VmState.ERROR)
        await servers.add_fault(conn, server_id, Fault(code=500, message=message))
    log.warning("server %s is in ERROR: host %s does not have it", server_id, host)
    return True
