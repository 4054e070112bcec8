"""The conductor's consumers: build requests, reports (of tasks, actions, live migrations,
hypervisors' power states, the inventories of starting agents and the answers to the
conductor's probes of hosts), heartbeats; and its periodic work (hosts without heartbeats
marked down; the reaper of stuck tasks).

Conductors are competing consumers on shared durable queues: run as many as you like. Every
handler is idempotent, because the bus delivers at least once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from conductor import ipam
from conductor.cluster_state import ClusterState
from conductor.live_migration import LiveMigrationConductor
from conductor.reaper import Reaper
from conductor.reconcile import apply_probe_report, purge_deleted, reconcile, reconcile_power
from conductor.reports import apply_action_report, apply_task_report
from conductor.resize import ResizeScheduler
from conductor.scheduler.scheduler import NoValidHost, Scheduler
from shared import bus as bus_mod
from shared.bus import Bus, Subscription
from shared.config import Settings
from shared.db import actions, hosts, servers
from shared.db.hosts import Ratios, Resources
from shared.db.pool import Conn
from shared.logging import request_context
from shared.messages import (
    ActionReport,
    BuildServer,
    Fault,
    Heartbeat,
    HostInventory,
    LiveMigrateServer,
    LiveMigrationReport,
    Message,
    PowerStateReport,
    ProbeReport,
    ResizeServer,
    SpawnServer,
    TaskReport,
)
from shared.states import TaskState

log = logging.getLogger(__name__)


class ConductorService:
    def __init__(self, settings: Settings, pool: asyncpg.Pool, bus: Bus) -> None:
        self.settings = settings
        self.pool = pool
        self.bus = bus
        self.scheduler = Scheduler(
            ratios=Ratios(
                cpu=settings.cpu_allocation_ratio,
                ram=settings.ram_allocation_ratio,
                disk=settings.disk_allocation_ratio,
            ),
            down_after_s=settings.host_down_after_s,
            subset_size=settings.scheduler_host_subset_size,
        )
        self.resizes = ResizeScheduler(
            pool, bus, self.scheduler, allow_same_host=settings.allow_resize_to_same_host
        )
        self.live_migrations = LiveMigrationConductor(
            pool, bus, ratios=self.scheduler.ratios, down_after_s=settings.host_down_after_s
        )
        self.reaper = Reaper(
            pool,
            bus,
            interval_s=settings.reaper_interval_s,
            default_deadline_s=settings.task_deadline_s,
            deadlines=settings.task_deadlines,
            host_down_after_s=settings.host_down_after_s,
        )
        self.cluster_state = ClusterState(pool, host_down_after_s=settings.host_down_after_s)
        self._subscriptions: list[Subscription] = []
        self._periodic: asyncio.Task[None] | None = None

    async def start(self) -> None:
        for queue, handler in (
            (bus_mod.CONDUCTOR, self.handle_command),
            (bus_mod.REPORTS, self.handle_report),
            (bus_mod.HEARTBEATS, self.handle_heartbeat),
        ):
            self._subscriptions.append(await self.bus.consume(queue, handler, prefetch=32))
        self._periodic = asyncio.create_task(self._mark_dead_hosts_forever())
        self.reaper.start()
        self.cluster_state.start()
        log.info("conductor started")

    async def stop(self) -> None:
        await self.cluster_state.stop()
        await self.reaper.stop()
        if self._periodic is not None:
            self._periodic.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._periodic
        for subscription in self._subscriptions:
            await subscription.cancel()
        self._subscriptions.clear()

    # --- build ---------------------------------------------------------------------------

    async def handle_command(self, message: Message) -> None:
        with request_context(message.request_id):
            if isinstance(message, BuildServer):
                await self.build(message)
            elif isinstance(message, ResizeServer):
                await self.resizes.schedule(message)
            elif isinstance(message, LiveMigrateServer):
                await self.live_migrations.start(message)
            else:
                log.error("conductor got a command it does not handle: %s", message.type)

    async def build(self, request: BuildServer) -> None:
        """Schedule the server, claim its resources and hand it to the chosen host's agent."""
        spec = request.instance
        async with self.pool.acquire() as conn:
            row = await servers.get(conn, spec.server_id, None)
            if row is None:
                log.info("server %s is gone; dropping its build", spec.server_id)
                return
            need = Resources(row["vcpus"], row["ram_mb"], row["disk_gb"])
            if row["task_state"] == TaskState.SPAWNING and row["host"]:
                host = row["host"]  # a redelivery: the claim is made, send the spawn again
            elif row["task_state"] == TaskState.SCHEDULING:
                try:
                    claimed = await self.scheduler.claim_host(conn, spec.server_id, need)
                except NoValidHost as exc:
                    await self._build_failed(conn, request, str(exc))
                    return
                if claimed is None:
                    log.info("server %s was deleted while scheduling", spec.server_id)
                    return
                host = claimed
            else:
                log.info("server %s is past scheduling; dropping its build", spec.server_id)
                return
            if not await ipam.allocate_for_build(conn, request, host, self.settings):
                return
        log.info("scheduled server %s on %s", spec.server_id, host)
        await self.bus.publish(
            bus_mod.compute_queue(host),
            SpawnServer(
                request_id=request.request_id,
                server_id=spec.server_id,
                action_id=request.action_id,
                instance=spec,
                admin_pass=request.admin_pass,
            ),
        )

    async def _build_failed(self, conn: Conn, request: BuildServer, reason: str) -> None:
        log.warning("cannot schedule server %s: %s", request.server_id, reason)
        async with conn.transaction():
            await servers.set_error(
                conn,
                request.instance.server_id,
                Fault(code=500, message=reason),
                expected_task=TaskState.SCHEDULING.value,
            )
            await actions.finish(conn, request.action_id, success=False, message=reason)

    # --- reports and heartbeats ----------------------------------------------------------

    async def handle_report(self, message: Message) -> None:
        with request_context(message.request_id):
            if isinstance(message, TaskReport):
                applied = await apply_task_report(self.pool, message, self.bus)
                if not applied and message.server_id is not None:
                    # a late or duplicate command may have made a deleted server again
                    await purge_deleted(self.pool, self.bus, message.host, [message.server_id])
            elif isinstance(message, ActionReport):
                await apply_action_report(self.pool, message)
            elif isinstance(message, LiveMigrationReport):
                await self.live_migrations.apply_report(message)
            elif isinstance(message, PowerStateReport):
                await reconcile_power(self.pool, self.bus, message)
            elif isinstance(message, ProbeReport):
                await apply_probe_report(self.pool, self.bus, message)
            elif isinstance(message, HostInventory):
                await reconcile(self.pool, self.bus, message)
            else:
                log.error("unexpected message on the reports queue: %s", message.type)

    async def handle_heartbeat(self, message: Message) -> None:
        if not isinstance(message, Heartbeat):
            log.error("unexpected message on the heartbeats queue: %s", message.type)
            return
        if await hosts.heartbeat(self.pool, message.host, message.capacity):
            log.info("compute host %s is up", message.host)

    async def _mark_dead_hosts_forever(self) -> None:
        interval = max(1.0, self.settings.host_down_after_s / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                for name in await hosts.mark_down_stale(self.pool, self.settings.host_down_after_s):
                    log.warning("compute host %s is down: no heartbeat", name)
            except (OSError, asyncpg.PostgresError):
                log.exception("could not check host heartbeats")
