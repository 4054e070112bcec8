"""The conductor: what it hears on its three queues, and the work it repeats.

It consumes commands that need a decision (builds, resizes, live migrations, evacuations),
every report of every host (of the commands they ran, of their hypervisors' power states,
their inventories when they start, their answers to the conductor's probes) and heartbeats; each
queue's messages go to their handler by type. It repeats three things: marking down hosts
without heartbeats, reaping tasks nobody will finish (conductor/reaper.py) and counting
hosts and servers for the metrics (conductor/cluster_state.py).

Conductors are competing consumers on shared durable queues: run as many as you like. Every
handler is idempotent, because the bus delivers at least once.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import asyncpg

from conductor.build import Builds
from conductor.cluster_state import ClusterState
from conductor.evacuate import Evacuations
from conductor.hearing import Hearing
from conductor.live_migration import LiveMigrationConductor
from conductor.reaper import Reaper
from conductor.reconcile import apply_probe_report, purge_deleted, reconcile, reconcile_power
from conductor.reports import Reports
from conductor.resize import ResizeScheduler
from conductor.scheduler.scheduler import Scheduler
from shared import bus as bus_mod
from shared.bus import Bus, Subscription
from shared.config import Settings
from shared.db import hosts, image_uploads
from shared.db.hosts import Ratios
from shared.logging import request_context
from shared.messages import (
    BuildServer,
    CommandReport,
    EvacuateServer,
    Heartbeat,
    HostInventory,
    LiveMigrateServer,
    Message,
    PowerStateReport,
    ProbeReport,
    ResizeServer,
)
from shared.periodic import Periodic

log = logging.getLogger(__name__)

Handler = Callable[[Any], Awaitable[object]]


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
            subset_size=settings.scheduler_host_subset_size,
        )
        self.builds = Builds(pool, bus, self.scheduler, settings)
        self.reports = Reports(pool, bus)
        self.resizes = ResizeScheduler(
            pool, bus, self.scheduler, allow_same_host=settings.allow_resize_to_same_host
        )
        self.evacuations = Evacuations(pool, bus, self.scheduler)
        self.live_migrations = LiveMigrationConductor(
            pool, bus, ratios=self.scheduler.ratios, down_after_s=settings.host_down_after_s
        )
        #: whether silence means anything now: a broker or database outage silences every host
        self.hearing = Hearing(bus, settings.host_down_after_s)
        self.hearing_check = Periodic(
            "watch the broker connection",
            self.hearing.sample,
            interval_s=1.0,
            tolerated=(),
        )
        self.reaper = Reaper(
            pool,
            bus,
            interval_s=settings.reaper_interval_s,
            default_deadline_s=settings.task_deadline_s,
            deadlines=settings.task_deadlines,
            host_down_after_s=settings.host_down_after_s,
            hearing=self.hearing,
        )
        self.cluster_state = ClusterState(pool, host_down_after_s=settings.host_down_after_s)
        self.host_check = Periodic(
            "check host heartbeats",
            self.mark_dead_hosts,
            interval_s=max(1.0, settings.host_down_after_s / 3),
            tolerated=(OSError, asyncpg.PostgresError),
        )
        self.upload_check = Periodic(
            "put stale image uploads back",
            self.reset_stale_uploads,
            interval_s=max(1.0, settings.image_upload_stale_after_s / 4),
            tolerated=(OSError, asyncpg.PostgresError),
        )
        self._queues: dict[str, Mapping[type[Message], Handler]] = {
            bus_mod.CONDUCTOR: {
                BuildServer: self.builds.build,
                ResizeServer: self.resizes.schedule,
                LiveMigrateServer: self.live_migrations.start,
                EvacuateServer: self.evacuations.evacuate,
            },
            bus_mod.REPORTS: {
                CommandReport: self.apply_report,
                PowerStateReport: functools.partial(reconcile_power, pool, bus),
                ProbeReport: functools.partial(apply_probe_report, pool, bus),
                HostInventory: functools.partial(reconcile, pool, bus),
            },
            bus_mod.HEARTBEATS: {Heartbeat: self.heartbeat},
        }
        self._subscriptions: list[Subscription] = []

    async def start(self) -> None:
        for queue, handlers in self._queues.items():
            dispatch = functools.partial(_dispatch, queue, handlers)
            self._subscriptions.append(await self.bus.consume(queue, dispatch, prefetch=32))
        self.hearing_check.start()
        self.host_check.start()
        self.upload_check.start()
        self.reaper.start()
        self.cluster_state.start()
        log.info("conductor started")

    async def stop(self) -> None:
        await self.cluster_state.stop()
        await self.reaper.stop()
        await self.host_check.stop()
        await self.hearing_check.stop()
        await self.upload_check.stop()
        for subscription in self._subscriptions:
            await subscription.cancel()
        self._subscriptions.clear()

    async def apply_report(self, report: CommandReport) -> None:
        """Apply a host's report of a command. A refused report of a server the database has
        deleted makes the host destroy the server's domain: a late or duplicate command may
        have made it again."""
        applied = await self.reports.apply(report)
        if not applied and report.server_id is not None:
            await purge_deleted(self.pool, self.bus, report.host, [report.server_id])

    async def heartbeat(self, message: Heartbeat) -> None:
        try:
            came_up = await hosts.heartbeat(self.pool, message.host, message.capacity)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            self.hearing.missed()  # the database did not hear it: silence means nothing now
            raise
        if came_up:
            log.info("compute host %s is up", message.host)

    async def reset_stale_uploads(self) -> None:
        """An image upload whose gateway died stays ``saving`` with nobody to finish it: put
        it back to ``queued`` (its data never became visible) so it can be uploaded again."""
        stale = self.settings.image_upload_stale_after_s
        for image_id in await image_uploads.reset_stale(self.pool, stale):
            log.warning("image %s: its upload stopped (no gateway); queued again", image_id)

    async def mark_dead_hosts(self) -> None:
        """Hosts silent for ``host_down_after_s`` are down, unless this conductor could not
        have heard them (conductor/hearing.py): then they are judged once it could."""
        if not self.hearing.trusted():
            log.info("not judging hosts on their silence: %s", self.hearing.why_not())
            return
        for name in await hosts.mark_down_stale(self.pool, self.settings.host_down_after_s):
            log.warning("compute host %s is down: no heartbeat", name)


async def _dispatch(
    queue: str, handlers: Mapping[type[Message], Handler], message: Message
) -> None:
    """Hand ``message`` to its handler by type, under its request id."""
    with request_context(message.request_id):
        handler = handlers.get(type(message))
        if handler is None:
            log.error("unexpected message on the %s queue: %s", queue, message.type)
            return
        await handler(message)
