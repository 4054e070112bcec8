"""A new server's way to its host: scheduled, its resources and addresses claimed, then
handed to the chosen host's agent (``SpawnServer``), whose report ends the build.

A build may come twice (delivery is at least once): a server already placed (``spawning`` on
a host) has its spawn sent again, with nothing claimed twice; one that left ``scheduling``
any other way (deleted meanwhile) is dropped.
"""

from __future__ import annotations

import logging
import uuid

import asyncpg

from conductor import ipam
from conductor.scheduler.scheduler import NoValidHost, Scheduler
from shared.bus import Bus
from shared.config import Settings
from shared.db import actions, servers
from shared.db.hosts import Resources
from shared.db.placement import Placed
from shared.db.pool import Conn
from shared.messages import BuildServer, Fault
from shared.rpcapi import ComputeClient, Envelope
from shared.states import TaskState

log = logging.getLogger(__name__)


class Builds:
    def __init__(
        self, pool: asyncpg.Pool, bus: Bus, scheduler: Scheduler, settings: Settings
    ) -> None:
        self.pool = pool
        self.bus = bus
        self.scheduler = scheduler
        self.settings = settings

    async def build(self, request: BuildServer) -> None:
        """Schedule the server, claim its resources and hand it to the chosen host's agent."""
        spec = request.instance
        async with self.pool.acquire() as conn:
            placed = await self._place(conn, request)
            if placed is None:
                return
            host = _host_of(spec.server_id, placed)
            if host is None:
                return
            taken = placed.addresses  # what the placement took already
            if not await ipam.allocate_for_build(conn, request, host, self.settings, taken=taken):
                return
        log.info("scheduled server %s on %s", spec.server_id, host)
        await ComputeClient(self.bus, host).spawn_server(
            Envelope(request.request_id, spec.server_id, request.action_id),
            spec,
            request.admin_pass,
        )

    async def _place(self, conn: Conn, request: BuildServer) -> Placed | None:
        """What the placement did and found (``_host_of`` says where it leaves the build);
        None when no host has room (the build has failed). One statement
        (``Scheduler.place_server``) places the server if it waits and says what became of
        it if not: no read before it. A server placed now takes its addresses in that
        statement too: most builds need no other (``ipam.allocate_for_build``)."""
        spec = request.instance
        flavor = spec.flavor
        need = Resources(flavor.vcpus, flavor.ram_mb, flavor.disk_gb)
        networks = ipam.build_networks(self.settings)
        try:
            return await self.scheduler.place_server(conn, spec.server_id, need, networks=networks)
        except NoValidHost as exc:
            await _failed(conn, request, str(exc))
            return None


def _host_of(server_id: uuid.UUID, placed: Placed) -> str | None:
    """Where a placement leaves the build: the host claimed now, or by an earlier delivery
    of the same build (``spawning`` on a host: the claim is made, the spawn is sent again);
    None when it is over."""
    if placed.host is not None:
        return placed.host
    if not placed.found:
        log.info("server %s is gone; dropping its build", server_id)
        return None
    if placed.task_state == TaskState.SPAWNING and placed.placed_on:
        return placed.placed_on  # a redelivery: nothing claimed twice
    if placed.task_state == TaskState.SCHEDULING:
        log.info("server %s stopped waiting while scheduling", server_id)
    else:
        log.info("server %s is past scheduling; dropping its build", server_id)
    return None


async def _failed(conn: Conn, request: BuildServer, reason: str) -> None:
    log.warning("cannot schedule server %s: %s", request.server_id, reason)
    async with conn.transaction():
        await servers.set_error(
            conn,
            request.instance.server_id,
            Fault(code=500, message=reason),
            expected_task=TaskState.SCHEDULING.value,
        )
        await actions.finish(conn, request.action_id, success=False, message=reason)
