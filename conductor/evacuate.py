"""Evacuations (nova's os-evacuate, ``stratus host evacuate``): a server whose host is gone is
placed on another host and rebuilt there from its image, the same server (id, addresses,
metadata, config drive).

The gateway recorded the evacuation (``accepted``, the server's spec with it) and set the
server's task to ``rebuilding``. Here, in one transaction under the server's row lock: the
scheduler claims the destination (as for a build: alive, room, never the dead source; only
the requested host when the request named one), the server's claim on the dead source is
given back and the server is accounted on the destination, which the record then names
(``placed``). After the commit the destination gets a ``RebuildServer``; its report ends the
task as any rebuild's does (ACTIVE, or ERROR with the host's fault), coming from the host the
server is on now (conductor/legality.py). A stopped server comes back running: a rebuild
boots what it builds, as nova's did.

When no host has room the evacuation is over at once: the server stays where it was, in the
state it was, the task ended, with a fault and the action failed saying why; nothing stays
stuck. The dead source, when it returns, is told to destroy its stale copy
(conductor/reconcile.py).

Delivery is at least once: a copy of the command for an evacuation already placed sends the
rebuild again (the agent and its driver drop a rebuild of the same action done already); one
for an evacuation that is over, or that a delete or os-resetState overtook, is dropped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg

from conductor.scheduler.scheduler import NoValidHost, Scheduler
from shared.bus import Bus
from shared.db import actions, evacuations, hosts, servers
from shared.db.evacuations import Evacuation, Status
from shared.db.hosts import Resources
from shared.db.pool import Conn
from shared.db.records import LockedServer
from shared.messages import EvacuateServer, Fault
from shared.rpcapi import ComputeClient, Envelope
from shared.states import TaskState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Placed:
    """Where the server is to be rebuilt, and as what."""

    dest_host: str
    record: Evacuation


class Evacuations:
    def __init__(self, pool: asyncpg.Pool, bus: Bus, scheduler: Scheduler) -> None:
        self.pool = pool
        self.bus = bus
        self.scheduler = scheduler

    async def evacuate(self, request: EvacuateServer) -> None:
        """Place the evacuated server and have its new host rebuild it."""
        async with self.pool.acquire() as conn, conn.transaction():
            placed = await self._place(conn, request)
        if placed is None:
            return
        record = placed.record
        log.info(
            "evacuating server %s from %s to %s",
            record.server_id,
            record.source_host,
            placed.dest_host,
        )
        await ComputeClient(self.bus, placed.dest_host).rebuild_evacuated(
            Envelope(request.request_id, record.server_id, record.action_id),
            record.instance,
            request.admin_pass,
        )

    async def _place(self, conn: Conn, request: EvacuateServer) -> _Placed | None:
        """Claim the destination and move the server there; None when there is nothing to
        send (the evacuation is over, overtaken, or found no host)."""
        record = await evacuations.get(conn, request.evacuation_id)
        if record is None:
            log.info("evacuation %s is not recorded; dropping it", request.evacuation_id)
            return None
        row = await servers.lock(conn, record.server_id, None)
        awaited = await self._awaits(conn, row, record)
        if record.status == Status.PLACED and awaited and row is not None:
            if row.host == record.dest_host and record.dest_host is not None:
                return _Placed(record.dest_host, record)  # a copy: send the rebuild again
            return None
        if record.status != Status.ACCEPTED:
            log.info("evacuation %s is %s; dropping the copy", record.id, record.status)
            return None
        if row is None or not awaited or row.host != record.source_host:
            log.info("server %s moved on before its evacuation was placed", record.server_id)
            await evacuations.set_error(conn, record.id)
            return None
        need = Resources(row.vcpus, row.ram_mb, row.disk_gb)
        try:
            dest = await self.scheduler.claim(
                conn, need, exclude=[record.source_host], only=record.requested_host
            )
        except NoValidHost as exc:
            await self._failed(conn, row, record, str(exc))
            return None
        await hosts.release(conn, record.source_host, need)
        await servers.move(
            conn, row.id, dest, vcpus=row.vcpus, ram_mb=row.ram_mb, disk_gb=row.disk_gb
        )
        await evacuations.set_placed(conn, record.id, dest)
        return _Placed(dest, record)

    @staticmethod
    async def _awaits(conn: Conn, row: LockedServer | None, record: Evacuation) -> bool:
        """Does the server still wait for this evacuation (its task, its action pending)?"""
        if row is None or row.task_state != TaskState.REBUILDING:
            return False
        return await actions.is_pending(conn, record.action_id)

    @staticmethod
    async def _failed(conn: Conn, row: LockedServer, record: Evacuation, reason: str) -> None:
        """No host can take the server: it stays as it was (on its dead host, its task
        over), with a fault and its action failed, so an operator sees why and may try
        again once there is room."""
        where = f" on {record.requested_host}" if record.requested_host else ""
        message = f"Evacuation from {record.source_host} failed{where}: {reason}"
        log.warning("server %s: %s", row.id, message)
        await servers.restore_task(conn, row.id, task=TaskState.REBUILDING.value, previous=None)
        await servers.add_fault(conn, row.id, Fault(code=500, message=message))
        await actions.finish(conn, record.action_id, success=False, message=message)
        await evacuations.set_error(conn, record.id)
