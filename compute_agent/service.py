"""The compute agent: registers its host, heartbeats, and runs its queue's commands.

It never touches the database. It hears commands on ``compute.<host>``, runs them through the
virt driver one at a time per server (in arrival order), and reports every outcome to the
conductors. A command is acknowledged only after its report is confirmed by the broker, so a
crash in between means the command runs again, and the driver's operations are idempotent.
What the hypervisor tells on its own (a guest that shut itself down...) is reported too
(compute_agent/power_states.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from compute_agent.action_timing import timed
from compute_agent.live_migration import LiveMigrationAgent
from compute_agent.locks import KeyedLocks
from compute_agent.power_states import PowerStateWatch, wall_clock
from compute_agent.virt.driver import ComputeDriver, DriverError, server_id_of
from shared import bus as bus_mod
from shared.bus import Bus, PublishFailed, Subscription
from shared.logging import request_context
from shared.messages import (
    ActionMessage,
    ActionReport,
    BackupServer,
    ChangePassword,
    CleanUpLiveMigration,
    ConfirmResize,
    DestroyServer,
    Fault,
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
    TaskReport,
    UnpauseServer,
    WithAdminPass,
)
from shared.sealing import Keyring, UnsealError
from shared.states import PowerState, TaskState

log = logging.getLogger(__name__)

Work = Callable[[], Awaitable[PowerState]]


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
    ) -> None:
        """``image_store``: where snapshots are written (STRATUS_IMAGE_STORE_DIR); an agent
        without one refuses createImage. ``power_sync_interval_s``: how often the power
        state of every server is reported (0: only when the hypervisor tells of a change).
        ``keyring``: opens the admin passwords of commands (STRATUS_MESSAGE_KEY); an agent
        without one fails the actions that carry one."""
        self.host = host
        self.keyring = keyring
        self.bus = bus
        self.driver = driver
        self.heartbeat_interval_s = heartbeat_interval_s
        self.concurrency = concurrency
        self.image_store = image_store
        self._locks = KeyedLocks()
        self._subscription: Subscription | None = None
        self._heartbeats: asyncio.Task[None] | None = None
        self.live_migrations = LiveMigrationAgent(host, bus, driver)
        # ``clock`` stamps what the agent tells for people to read; nothing is judged by it
        self.clock = clock
        self.power_states = PowerStateWatch(
            host, bus, driver, self._locks, interval_s=power_sync_interval_s, clock=clock
        )
        self._commands: dict[type[Message], Callable[[Any], Awaitable[None]]] = {
            SpawnServer: self._spawn,
            DestroyServer: self._destroy,
            ChangePassword: self._change_password,
            RebootServer: self._reboot,
            RebuildServer: self._rebuild,
            SnapshotServer: self._snapshot,
            MigrateDisk: self._migrate_disk,
            FinishResize: self._finish_resize,
            ConfirmResize: self._confirm_resize,
            RevertResize: self._revert_resize,
            FinishRevertResize: self._finish_revert_resize,
            PauseServer: self._pause,
            UnpauseServer: self._unpause,
            SuspendServer: self._suspend,
            ResumeServer: self._resume,
            BackupServer: self._backup,
            InjectNetworkInfo: self._inject_network_info,
            ResetNetwork: self._reset_network,
            StopServer: self._power_off,
            StartServer: self._power_on,
            PrepareLiveMigration: self.live_migrations.prepare,
            LiveMigrate: self.live_migrations.migrate,
            FinishLiveMigration: self.live_migrations.finish,
            CleanUpLiveMigration: self.live_migrations.clean_up,
            RecoverLiveMigration: self.live_migrations.recover,
            RollBackLiveMigration: self.live_migrations.roll_back,
        }

    async def start(self) -> None:
        await self.driver.init_host(self.host)
        await self.bus.declare(bus_mod.REPORTS)
        await self.bus.declare(bus_mod.HEARTBEATS)
        await self.heartbeat()
        await self.report_inventory()
        self._heartbeats = asyncio.create_task(self._heartbeat_forever())
        self.power_states.start()
        self._subscription = await self.bus.consume(
            bus_mod.compute_queue(self.host), self.handle, prefetch=self.concurrency
        )
        log.info("compute agent for host %s started", self.host)

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.cancel()
            self._subscription = None
        if self._heartbeats is not None:
            self._heartbeats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeats
        await self.power_states.stop()
        await self.driver.close()

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

    async def _purge(self, command: PurgeServers) -> None:
        """Destroy domains of servers the database has deleted (while this host was away)."""
        if command.host != self.host:
            log.error("purge for host %s sent to %s; ignored", command.host, self.host)
            return
        for server_id in command.servers:
            async with self._locks.hold(server_id):
                try:
                    await self.driver.destroy(f"instance-{server_id}")
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

    async def heartbeat(self) -> None:
        capacity = await self.driver.capacity()
        await self.bus.publish(bus_mod.HEARTBEATS, Heartbeat(host=self.host, capacity=capacity))

    async def _heartbeat_forever(self) -> None:
        while True:
            # jittered, never later than the interval: agents started together (a simulated
            # cluster, a fleet back from an outage) drift apart instead of beating in step
            await asyncio.sleep(self.heartbeat_interval_s * random.uniform(0.75, 1.0))
            try:
                await self.heartbeat()
            except (PublishFailed, DriverError):
                log.exception("heartbeat failed")

    async def handle(self, message: Message) -> None:
        with request_context(message.request_id):  # on every line, a dropped command's too
            await self._dispatch(message)

    async def _dispatch(self, message: Message) -> None:
        if isinstance(message, PurgeServers):  # the commands about many servers
            await self._purge(message)
            return
        if isinstance(message, ProbeServers):
            await self._probe(message)
            return
        if message.server_id is None:
            log.error("dropping %s without a server id", message.type)
            return
        run = self._commands.get(type(message))
        if run is None:
            log.error("agent got a command it does not handle: %s", message.type)
            return
        async with self._locks.hold(message.server_id):
            await run(message)

    # --- commands ------------------------------------------------------------------------

    async def _spawn(self, command: SpawnServer) -> None:
        async def spawn() -> PowerState:
            return await self.driver.spawn(command.instance, self._admin_pass(command))

        await self._run(command, TaskState.SPAWNING, spawn)

    async def _destroy(self, command: DestroyServer) -> None:
        async def destroy() -> PowerState:
            await self.driver.destroy(command.domain_name)
            return PowerState.NOSTATE

        await self._run(command, TaskState.DELETING, destroy)

    async def _change_password(self, command: ChangePassword) -> None:
        async def change() -> PowerState:
            password = self._admin_pass(command)
            await self.driver.set_admin_password(command.domain_name, password)
            return await self.driver.power_state(command.domain_name)

        await self._run(command, TaskState.UPDATING_PASSWORD, change)

    async def _reboot(self, command: RebootServer) -> None:
        task = TaskState.REBOOTING_HARD if command.hard else TaskState.REBOOTING
        await self._run(
            command,
            task,
            lambda: self.driver.reboot(
                command.instance, hard=command.hard, action_id=command.action_id
            ),
        )

    async def _rebuild(self, command: RebuildServer) -> None:
        async def rebuild() -> PowerState:
            password = self._admin_pass(command)
            return await self.driver.rebuild(
                command.instance, password, action_id=command.action_id
            )

        await self._run(command, TaskState.REBUILDING, rebuild)

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

    async def _snapshot(self, command: SnapshotServer) -> None:
        await self._write_image(command, TaskState.IMAGE_SNAPSHOT)

    async def _backup(self, command: BackupServer) -> None:
        """A backup is written as a snapshot is; the conductor rotates the backups."""
        await self._write_image(command, TaskState.IMAGE_BACKUP)

    async def _write_image(self, command: SnapshotServer | BackupServer, task: TaskState) -> None:
        """The image file goes to ``<image store>/<image id>.<format>``; the report tells the
        conductor where (relative to the store) and how big, or why it failed."""
        location = f"{command.image_id}.{command.disk_format}"
        result = SnapshotResult(image_id=command.image_id)
        try:
            if self.image_store is None:
                raise DriverError(f"host {self.host} has no image store to write images to")
            size = await timed(
                command.type,
                self.driver.snapshot(
                    command.domain_name, command.image_id, self.image_store / location
                ),
            )
            power = await self.driver.power_state(command.domain_name)
        except DriverError as exc:
            log.warning("snapshot of %s failed: %s", command.server_id, exc)
            await self._report(
                command,
                task,
                power=await self._power_after_failure(command),
                error=str(exc),
                snapshot=result,
            )
            return
        log.info("image %s of server %s written", command.image_id, command.server_id)
        await self._report(
            command,
            task,
            power=power,
            snapshot=SnapshotResult(image_id=command.image_id, location=location, size_bytes=size),
        )

    async def _migrate_disk(self, command: MigrateDisk) -> None:
        await self._run(
            command,
            TaskState.RESIZE_MIGRATING,
            lambda: self.driver.migrate_disk_and_power_off(command.instance, command.dest_host),
        )

    async def _finish_resize(self, command: FinishResize) -> None:
        same_host = command.source_host == self.host
        await self._run(
            command,
            TaskState.RESIZE_FINISH,
            lambda: self.driver.finish_migration(command.instance, same_host=same_host),
        )

    async def _confirm_resize(self, command: ConfirmResize) -> None:
        async def confirm() -> PowerState:
            same_host = command.dest_host == self.host
            await self.driver.confirm_migration(command.domain_name, same_host=same_host)
            return await self.driver.power_state(command.domain_name)

        await self._run(command, TaskState.RESIZE_CONFIRMING, confirm)

    async def _revert_resize(self, command: RevertResize) -> None:
        """The destination of a resize to another host removes its copy."""

        async def remove_copy() -> PowerState:
            await self.driver.destroy(command.domain_name)
            return PowerState.NOSTATE

        await self._run(command, TaskState.RESIZE_REVERTING, remove_copy)

    async def _finish_revert_resize(self, command: FinishRevertResize) -> None:
        await self._run(
            command,
            TaskState.RESIZE_REVERTING,
            lambda: self.driver.finish_revert_migration(command.instance),
        )

    # --- admin actions -------------------------------------------------------------------

    async def _pause(self, command: PauseServer) -> None:
        await self._run(command, TaskState.PAUSING, lambda: self.driver.pause(command.domain_name))

    async def _unpause(self, command: UnpauseServer) -> None:
        await self._run(
            command, TaskState.UNPAUSING, lambda: self.driver.unpause(command.domain_name)
        )

    async def _suspend(self, command: SuspendServer) -> None:
        await self._run(
            command, TaskState.SUSPENDING, lambda: self.driver.suspend(command.domain_name)
        )

    async def _resume(self, command: ResumeServer) -> None:
        await self._run(
            command, TaskState.RESUMING, lambda: self.driver.resume(command.domain_name)
        )

    async def _power_off(self, command: StopServer) -> None:
        await self._run(
            command, TaskState.POWERING_OFF, lambda: self.driver.power_off(command.domain_name)
        )

    async def _power_on(self, command: StartServer) -> None:
        await self._run(
            command, TaskState.POWERING_ON, lambda: self.driver.power_on(command.instance)
        )

    async def _inject_network_info(self, command: InjectNetworkInfo) -> None:
        await self._run_untasked(
            command,
            "injectNetworkInfo",
            lambda: self.driver.inject_network_info(command.domain_name, command.addresses),
        )

    async def _reset_network(self, command: ResetNetwork) -> None:
        await self._run_untasked(
            command,
            "resetNetwork",
            lambda: self.driver.reset_network(command.domain_name, command.addresses),
        )

    async def _run_untasked(
        self, command: ActionMessage, action: str, work: Callable[[], Awaitable[None]]
    ) -> None:
        """Do ``work`` for an action that sets no task state and report its outcome."""
        error: str | None = None
        try:
            await timed(command.type, work())
        except DriverError as exc:
            log.warning("%s of %s failed: %s", action, command.server_id, exc)
            error = str(exc)
        else:
            log.info("%s of %s done", action, command.server_id)
        await self.bus.publish(
            bus_mod.REPORTS,
            ActionReport(
                request_id=command.request_id,
                server_id=command.server_id,
                action_id=command.action_id,
                host=self.host,
                action=action,
                success=error is None,
                fault=Fault(code=500, message=error) if error is not None else None,
            ),
        )

    # --- running and reporting -----------------------------------------------------------

    async def _run(self, command: ActionMessage, task: TaskState, work: Work) -> None:
        """Do ``work`` and report its outcome as the end of ``task``."""
        try:
            power = await timed(command.type, work())
        except DriverError as exc:
            log.warning("%s of %s failed: %s", task.value, command.server_id, exc)
            power = await self._power_after_failure(command)
            await self._report(command, task, power=power, error=str(exc))
            return
        log.info("%s of %s done", task.value, command.server_id)
        await self._report(command, task, power=power)

    async def _power_after_failure(self, command: ActionMessage) -> PowerState:
        """What the hypervisor says of the server after a failed operation (reported with
        the failure, so the conductor records the truth); NOSTATE if it cannot say."""
        try:
            return await self.driver.power_state(f"instance-{command.server_id}")
        except DriverError:
            return PowerState.NOSTATE

    async def _report(
        self,
        command: ActionMessage,
        task: TaskState,
        *,
        power: PowerState = PowerState.NOSTATE,
        error: str | None = None,
        snapshot: SnapshotResult | None = None,
    ) -> None:
        await self.bus.publish(
            bus_mod.REPORTS,
            TaskReport(
                request_id=command.request_id,
                server_id=command.server_id,
                action_id=command.action_id,
                host=self.host,
                task_state=task.value,
                success=error is None,
                power_state=int(power),
                fault=Fault(code=500, message=error) if error is not None else None,
                snapshot=snapshot,
            ),
        )
