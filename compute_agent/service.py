"""The compute agent: registers its host, heartbeats, and runs its queue's commands.

It never touches the database. It hears commands on ``compute.<host>``, each handed to its
handler by type; a command of a user's action runs through the virt driver one at a time per
server (in arrival order), and its outcome goes back to the conductors as one
``CommandReport`` (compute_agent/reporting.py). A command is acknowledged only after its
report is confirmed by the broker, so a crash in between means the command runs again, and
the driver's operations are idempotent. What the hypervisor tells on its own (a guest that
shut itself down...) is reported too (compute_agent/power_states.py). Gateways' calls, which
wait for their answer (where a guest's display listens), come on ``calls.<host>`` and are
answered by compute_agent/consoles.py.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from compute_agent.action_timing import timed
from compute_agent.consoles import ConsoleResponder
from compute_agent.image_service import ImageServiceClient
from compute_agent.live_migration import LiveMigrationSteps
from compute_agent.locks import KeyedLocks
from compute_agent.power_states import PowerStateWatch, wall_clock
from compute_agent.reporting import Done, Reporter
from compute_agent.virt.driver import ComputeDriver, DriverError, server_id_of
from shared import bus as bus_mod
from shared import rpcapi
from shared.bus import Bus, PublishFailed, Subscription
from shared.logging import request_context
from shared.messages import (
    ActionMessage,
    BackupServer,
    ChangePassword,
    CleanUpLiveMigration,
    ConfirmResize,
    DestroyServer,
    FinishLiveMigration,
    FinishResize,
    FinishRevertResize,
    Heartbeat,
    HostInventory,
    InjectNetworkInfo,
    LiveMigrate,
    Message,
    MigrateDisk,
    PauseServer,
    PrepareLiveMigration,
    ProbeReport,
    ProbeServers,
    PurgeServers,
    RebootServer,
    RebuildServer,
    RecoverLiveMigration,
    ResetNetwork,
    ResumeServer,
    RevertResize,
    RollBackLiveMigration,
    ServerPower,
    SnapshotResult,
    SnapshotServer,
    SpawnServer,
    StartServer,
    StopServer,
    SuspendServer,
    UnpauseServer,
    WithAdminPass,
)
from shared.periodic import Periodic
from shared.sealing import Keyring, UnsealError
from shared.states import PowerState

log = logging.getLogger(__name__)

#: A command's work on the hypervisor: what it leaves to report, or a ``DriverError``.
Work = Callable[[Any], Awaitable[Done]]
Handler = Callable[[Any], Awaitable[None]]


#: how many commands done an agent remembers, to drop their copies (a few minutes' worth)
DONE_REMEMBERED = 20_000


@runtime_checkable
class Reconnecting(Protocol):
    """A driver whose connection to its hypervisor can close and be opened again (libvirt's,
    when libvirtd restarts): it calls back once it has reconnected."""

    def on_reconnect(self, callback: Callable[[], Awaitable[None]]) -> None: ...


class RecentIds:
    """The last ``size`` ids added, oldest forgotten first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._ids: OrderedDict[uuid.UUID, None] = OrderedDict()

    def has(self, item: uuid.UUID) -> bool:
        return item in self._ids

    def add(self, item: uuid.UUID) -> None:
        self._ids[item] = None
        if len(self._ids) > self.size:
            self._ids.popitem(last=False)


class AgentService:
    def __init__(
        self,
        host: str,
        bus: Bus,
        driver: ComputeDriver,
        *,
        heartbeat_interval_s: float = 10.0,
        concurrency: int = 16,
        image_store: Path | None = None,
        power_sync_interval_s: float = 60.0,
        keyring: Keyring | None = None,
        clock: Callable[[], datetime] = wall_clock,
        image_cache_max_age_s: float = 86400.0,
        image_service: ImageServiceClient | None = None,
        scratch_dir: Path | None = None,
    ) -> None:
        """``image_store``: where snapshots are written (STRATUS_IMAGE_STORE_DIR); an agent
        without one refuses createImage. ``power_sync_interval_s``: how often the power
        state of every server is reported (0: only when the hypervisor tells of a change).
        ``keyring``: opens the admin passwords of commands (STRATUS_MESSAGE_KEY); an agent
        without one fails the actions that carry one. ``image_cache_max_age_s``: how long
        an image the host downloaded may go unused before it is removed. ``image_service``:
        where createImage and createBackup store their images (the image API), the file
        written first in ``scratch_dir``; without it they go to ``image_store``."""
        self.host = host
        self.keyring = keyring
        self.bus = bus
        self.driver = driver
        self.concurrency = concurrency
        self.image_store = image_store
        self.image_service = image_service
        self.scratch_dir = scratch_dir
        self.reporter = Reporter(host, bus)
        self._locks = KeyedLocks()
        # delivery is at least once: a copy of a command done (redelivered, or retried late,
        # after the actions that followed it) must not be done again, or a late pause would
        # pause a server its owner has unpaused since
        self._done = RecentIds(DONE_REMEMBERED)
        self._subscription: Subscription | None = None
        self._calls: Subscription | None = None
        # jittered, never later than the interval: agents started together (a simulated
        # cluster, a fleet back from an outage) drift apart instead of beating in step
        self.heartbeats = Periodic(
            "heartbeat",
            self.heartbeat,
            interval_s=heartbeat_interval_s,
            tolerated=(PublishFailed, DriverError),
            jitter=0.25,
        )
        self.image_cache_max_age_s = image_cache_max_age_s
        self.image_sweeps = Periodic(
            "remove unused images",
            self.remove_unused_images,
            interval_s=max(1.0, min(600.0, image_cache_max_age_s / 2)),
            tolerated=(OSError, DriverError),
        )
        # ``clock`` stamps what the agent tells for people to read; nothing is judged by it
        self.clock = clock
        self.power_states = PowerStateWatch(
            host, bus, driver, self._locks, interval_s=power_sync_interval_s, clock=clock
        )
        self._handlers = self._dispatch_table(LiveMigrationSteps(driver))

    def _dispatch_table(self, live: LiveMigrationSteps) -> dict[type[Message], Handler]:
        """Every message this agent hears, by type, and what it does with it."""
        commands: Mapping[type[ActionMessage], Work] = {
            SpawnServer: self._spawn,
            DestroyServer: self._destroy,
            ChangePassword: self._change_password,
            RebootServer: self._reboot,
            RebuildServer: self._rebuild,
            SnapshotServer: self._write_image,
            BackupServer: self._write_image,  # the conductor rotates the backups
            MigrateDisk: self._migrate_disk,
            FinishResize: self._finish_resize,
            ConfirmResize: self._confirm_resize,
            RevertResize: self._revert_resize,
            FinishRevertResize: self._finish_revert_resize,
            PauseServer: self._pause,
            UnpauseServer: self._unpause,
            SuspendServer: self._suspend,
            ResumeServer: self._resume,
            StopServer: self._power_off,
            StartServer: self._power_on,
            InjectNetworkInfo: self._inject_network_info,
            ResetNetwork: self._reset_network,
            PrepareLiveMigration: live.prepare,
            LiveMigrate: live.migrate,
            FinishLiveMigration: live.finish,
            CleanUpLiveMigration: live.clean_up,
            RecoverLiveMigration: live.recover,
            RollBackLiveMigration: live.roll_back,
        }
        handlers: dict[type[Message], Handler] = {
            PurgeServers: self._purge,  # the commands about many servers
            ProbeServers: self._probe,
        }
        handlers.update({kind: self._reported(work) for kind, work in commands.items()})
        return handlers

    async def start(self) -> None:
        await self.driver.init_host(self.host)
        if isinstance(self.driver, Reconnecting):
            self.driver.on_reconnect(self.hypervisor_back)
        await self.bus.declare(bus_mod.REPORTS)
        await self.bus.declare(bus_mod.HEARTBEATS)
        await self.heartbeat()
        await self.report_inventory()
        self.heartbeats.start()
        self.power_states.start()
        self.image_sweeps.start()
        self._subscription = await self.bus.consume(
            bus_mod.compute_queue(self.host), self.handle, prefetch=self.concurrency
        )
        self._calls = await self.bus.serve(
            bus_mod.call_queue(self.host), ConsoleResponder(self.driver)
        )
        log.info("compute agent for host %s started", self.host)

    async def stop(self) -> None:
        for subscription in (self._subscription, self._calls):
            if subscription is not None:
                await subscription.cancel()
        self._subscription = self._calls = None
        await self.heartbeats.stop()
        await self.power_states.stop()
        await self.image_sweeps.stop()
        await self.driver.close()

    async def remove_unused_images(self) -> None:
        for name in await self.driver.remove_unused_images(self.image_cache_max_age_s):
            log.info("removed image %s: no server of %s uses it any more", name, self.host)

    async def report_inventory(self) -> None:
        """Tell the conductor every server this host has, before taking any command, so it
        can reconcile what changed while the agent was away (conductor/reconcile.py).
        It gets a request id of its own, which the purge it may cause carries back."""
        observed_at = self.clock()
        names = await self.driver.list_instances()
        found = [server_id for name in names if (server_id := server_id_of(name)) is not None]
        inventory = HostInventory(
            request_id=f"req-{uuid.uuid4()}", host=self.host, observed_at=observed_at, servers=found
        )
        with request_context(inventory.request_id):
            log.info("reporting the %d server(s) of host %s", len(found), self.host)
            await self.bus.publish(bus_mod.REPORTS, inventory)

    async def hypervisor_back(self) -> None:
        """The driver has reconnected to its hypervisor after losing it (libvirtd restarted).
        What happened meanwhile was not heard (a guest that stopped, an event missed), so the
        host tells everything again, as at its start: a heartbeat (up again now, not at the
        next beat), its inventory and every server's power state; the conductor reconciles
        (conductor/reconcile.py). What cannot be sent now the periodic reports send later."""
        log.info("hypervisor of host %s reachable again: reporting its servers", self.host)
        try:
            await self.heartbeat()
            await self.report_inventory()
            await self.power_states.report_all()
        except (PublishFailed, DriverError) as exc:
            log.warning("could not report host %s after reconnecting: %s", self.host, exc)

    async def heartbeat(self) -> None:
        """The host is alive and what it offers. Sent only while the hypervisor answers:
        ``capacity`` raises ``DriverError`` while the driver cannot reach it (libvirtd
        restarting), so the host falls silent and the conductor marks it down, scheduling
        nothing there, if that lasts ``host_down_after_s``; it beats again once the driver
        has reconnected. (A heartbeat has no way to say "alive, hypervisor away", and a host
        whose hypervisor is away can do nothing a command asks.)"""
        capacity = await self.driver.capacity()
        await self.bus.publish(bus_mod.HEARTBEATS, Heartbeat(host=self.host, capacity=capacity))

    async def handle(self, message: Message) -> None:
        with request_context(message.request_id):  # on every line, a dropped command's too
            handler = self._handlers.get(type(message))
            if handler is None:
                log.error("agent got a command it does not handle: %s", message.type)
                return
            await handler(message)

    # --- the commands about many servers ---------------------------------------------------

    async def _purge(self, command: PurgeServers) -> None:
        """Destroy domains of servers the database has deleted, or evacuated to another host,
        while this host was away: stale copies, destroyed and never started."""
        if command.host != self.host:
            log.error("purge for host %s sent to %s; ignored", command.host, self.host)
            return
        for server_id in command.servers:
            async with self._locks.hold(server_id):
                try:
                    await self.driver.destroy(rpcapi.domain_name(server_id))
                except DriverError:
                    log.exception("could not destroy the domain of deleted server %s", server_id)
                else:
                    log.warning("destroyed the domain of deleted server %s", server_id)

    async def _probe(self, probe: ProbeServers) -> None:
        """Tell which of the probed servers the hypervisor has, and their power.

        The look happens now, after the probe arrived, hence after its ``probe_at``: that is
        all the conductor needs to judge the answer, so the answer carries no time of this
        host's. No server lock is taken: a command running meanwhile has its task set in the
        database, which the conductor's judgment respects, and a long one (a snapshot)
        must not hold the answer back. A hypervisor that cannot tell gets no answer: the
        next periodic report asks again.
        """
        if probe.host != self.host:
            log.error("probe for host %s sent to %s; ignored", probe.host, self.host)
            return
        try:
            states = await self.driver.power_states()
        except DriverError:
            log.exception("cannot answer the probe of %d server(s)", len(probe.servers))
            return
        powers = {server_id_of(name): power for name, power in states.items()}
        found = [
            ServerPower(server_id=server_id, power_state=int(powers[server_id]))
            for server_id in probe.servers
            if server_id in powers
        ]
        await self.bus.publish(
            bus_mod.REPORTS,
            ProbeReport(
                request_id=probe.request_id,
                host=self.host,
                servers=probe.servers,
                probe_at=probe.probe_at,
                cause=probe.cause,
                found=found,
            ),
        )

    # --- running a command and reporting it ----------------------------------------------

    def _reported(self, work: Work) -> Handler:
        """The handler of a command of a user's action: ``work`` under the server's lock,
        then its report."""

        async def handle(command: ActionMessage) -> None:
            if command.server_id is None:
                log.error("dropping %s without a server id", command.type)
                return
            async with self._locks.hold(command.server_id):
                if self._done.has(command.message_id):
                    log.info("%s of %s was done already: a copy", command.type, command.server_id)
                    return
                await self._run(command, work)
                self._done.add(command.message_id)

        return handle

    async def _run(self, command: ActionMessage, work: Work) -> None:
        """Do ``work`` for ``command`` and report its outcome."""
        try:
            done = await timed(command.type, work(command))
        except DriverError as exc:
            log.warning("%s of %s failed: %s", command.type, command.server_id, exc)
            failed = Done(await self._power_after_failure(command), snapshot=_image_of(command))
            await self.reporter.report(command, failed, error=str(exc))
            return
        log.info("%s of %s done", command.type, command.server_id)
        await self.reporter.report(command, done, error=None)

    async def _power_after_failure(self, command: ActionMessage) -> PowerState:
        """What the hypervisor says of the server after a failed operation (reported with
        the failure, so the conductor records the truth); NOSTATE if it cannot say."""
        assert command.server_id is not None
        try:
            return await self.driver.power_state(rpcapi.domain_name(command.server_id))
        except DriverError:
            return PowerState.NOSTATE

    def _admin_pass(self, command: WithAdminPass) -> str:
        """The command's password in clear, opened only here, where it is used.

        One that does not open (this agent's STRATUS_MESSAGE_KEY is not the gateway's) never
        will: it fails the action with a fault (a ``DriverError``, as a hypervisor's refusal
        is reported), rather than the handler, whose retries would only end in the
        dead-letter queue with the server stuck in its task until the reaper ends it.
        """
        if self.keyring is None:
            raise DriverError(
                f"host {self.host} has no message key (STRATUS_MESSAGE_KEY) to open the "
                "admin password with"
            )
        try:
            return command.open_admin_pass(self.keyring)
        except UnsealError as exc:
            raise DriverError(f"{exc} (host {self.host})") from exc

    # --- the commands of server actions --------------------------------------------------

    async def _spawn(self, command: SpawnServer) -> Done:
        return Done(await self.driver.spawn(command.instance, self._admin_pass(command)))

    async def _destroy(self, command: DestroyServer) -> Done:
        await self.driver.destroy(command.domain_name)
        return Done()

    async def _change_password(self, command: ChangePassword) -> Done:
        password = self._admin_pass(command)
        await self.driver.set_admin_password(command.domain_name, password)
        return Done(await self.driver.power_state(command.domain_name))

    async def _reboot(self, command: RebootServer) -> Done:
        return Done(
            await self.driver.reboot(
                command.instance, hard=command.hard, action_id=command.action_id
            )
        )

    async def _rebuild(self, command: RebuildServer) -> Done:
        password = self._admin_pass(command)
        return Done(
            await self.driver.rebuild(command.instance, password, action_id=command.action_id)
        )

    async def _write_image(self, command: SnapshotServer | BackupServer) -> Done:
        """The image file is written, and stored through the image service (or written
        straight into the shared image store); the report tells the conductor where (relative
        to the store) and what it is, or why it failed."""
        name = f"{command.image_id}.{command.disk_format}"
        if self.image_service is not None and self.scratch_dir is not None:
            result = await self._store_image(command, self.image_service, self.scratch_dir / name)
        elif self.image_store is not None:
            size = await self.driver.snapshot(
                command.domain_name, command.image_id, self.image_store / name
            )
            result = SnapshotResult(image_id=command.image_id, location=name, size_bytes=size)
        else:
            raise DriverError(f"host {self.host} has no image store to write images to")
        power = await self.driver.power_state(command.domain_name)
        log.info("image %s of server %s written", command.image_id, command.server_id)
        return Done(power, snapshot=result)

    async def _store_image(
        self, command: SnapshotServer | BackupServer, images: ImageServiceClient, scratch: Path
    ) -> SnapshotResult:
        """Write the image here, then hand it to the image service: no host writes the
        image store then. The local file goes either way."""
        await asyncio.to_thread(scratch.parent.mkdir, parents=True, exist_ok=True)
        try:
            await self.driver.snapshot(command.domain_name, command.image_id, scratch)
            stored = await images.upload(command.image_id, scratch)
        finally:
            await asyncio.to_thread(scratch.unlink, missing_ok=True)
        return SnapshotResult(
            image_id=command.image_id,
            location=stored.location,
            size_bytes=stored.size,
            checksum=stored.checksum,
            os_hash_value=stored.os_hash_value,
        )

    async def _migrate_disk(self, command: MigrateDisk) -> Done:
        return Done(
            await self.driver.migrate_disk_and_power_off(command.instance, command.dest_host)
        )

    async def _finish_resize(self, command: FinishResize) -> Done:
        same_host = command.source_host == self.host
        return Done(await self.driver.finish_migration(command.instance, same_host=same_host))

    async def _confirm_resize(self, command: ConfirmResize) -> Done:
        same_host = command.dest_host == self.host
        await self.driver.confirm_migration(command.domain_name, same_host=same_host)
        return Done(await self.driver.power_state(command.domain_name))

    async def _revert_resize(self, command: RevertResize) -> Done:
        """The destination of a resize to another host removes its copy."""
        await self.driver.destroy(command.domain_name)
        return Done()

    async def _finish_revert_resize(self, command: FinishRevertResize) -> Done:
        return Done(await self.driver.finish_revert_migration(command.instance))

    # --- the commands of admin actions ---------------------------------------------------

    async def _pause(self, command: PauseServer) -> Done:
        return Done(await self.driver.pause(command.domain_name))

    async def _unpause(self, command: UnpauseServer) -> Done:
        return Done(await self.driver.unpause(command.domain_name))

    async def _suspend(self, command: SuspendServer) -> Done:
        return Done(await self.driver.suspend(command.domain_name))

    async def _resume(self, command: ResumeServer) -> Done:
        return Done(await self.driver.resume(command.domain_name))

    async def _power_off(self, command: StopServer) -> Done:
        return Done(await self.driver.power_off(command.domain_name))

    async def _power_on(self, command: StartServer) -> Done:
        return Done(await self.driver.power_on(command.instance))

    async def _inject_network_info(self, command: InjectNetworkInfo) -> Done:
        await self.driver.inject_network_info(command.domain_name, command.addresses)
        return Done()

    async def _reset_network(self, command: ResetNetwork) -> Done:
        await self.driver.reset_network(command.domain_name, command.addresses)
        return Done()


def _image_of(command: ActionMessage) -> SnapshotResult | None:
    """The image a snapshot or backup was to write: its report names it whatever happened,
    so the conductor can put the image in ERROR."""
    if isinstance(command, SnapshotServer | BackupServer):
        return SnapshotResult(image_id=command.image_id)
    return None
