"""The compute agent: registers its host, heartbeats, and runs its queue's commands.

It never touches the database. It hears commands on ``compute.<host>``, runs them through the
virt driver one at a time per server (in arrival order), and reports every outcome to the
conductors. A command is acknowledged only after its report is confirmed by the broker, so a
crash in between means the command runs again, and the driver's operations are idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from compute_agent.locks import KeyedLocks
from compute_agent.virt.driver import ComputeDriver, DriverError
from shared import bus as bus_mod
from shared.bus import Bus, PublishFailed, Subscription
from shared.logging import request_context
from shared.messages import (
    DestroyServer,
    Fault,
    Heartbeat,
    Message,
    SpawnServer,
    TaskReport,
)
from shared.states import PowerState, TaskState

log = logging.getLogger(__name__)


class AgentService:
    def __init__(
        self,
        host: str,
        bus: Bus,
        driver: ComputeDriver,
        *,
        heartbeat_interval_s: float = 10.0,
        concurrency: int = 16,
    ) -> None:
        self.host = host
        self.bus = bus
        self.driver = driver
        self.heartbeat_interval_s = heartbeat_interval_s
        self.concurrency = concurrency
        self._locks = KeyedLocks()
        self._subscription: Subscription | None = None
        self._heartbeats: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.driver.init_host(self.host)
        await self.bus.declare(bus_mod.REPORTS)
        await self.bus.declare(bus_mod.HEARTBEATS)
        await self.heartbeat()
        self._heartbeats = asyncio.create_task(self._heartbeat_forever())
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
        await self.driver.close()

    async def heartbeat(self) -> None:
        capacity = await self.driver.capacity()
        await self.bus.publish(bus_mod.HEARTBEATS, Heartbeat(host=self.host, capacity=capacity))

    async def _heartbeat_forever(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval_s)
            try:
                await self.heartbeat()
            except (PublishFailed, DriverError):
                log.exception("heartbeat failed")

    async def handle(self, message: Message) -> None:
        if message.server_id is None:
            log.error("dropping %s without a server id", message.type)
            return
        with request_context(message.request_id):
            async with self._locks.hold(message.server_id):
                if isinstance(message, SpawnServer):
                    await self._spawn(message)
                elif isinstance(message, DestroyServer):
                    await self._destroy(message)
                else:
                    log.error("agent got a command it does not handle: %s", message.type)

    async def _spawn(self, command: SpawnServer) -> None:
        try:
            power = await self.driver.spawn(command.instance, command.admin_pass)
        except DriverError as exc:
            log.warning("spawning %s failed: %s", command.server_id, exc)
            await self._report(command, TaskState.SPAWNING, error=str(exc))
            return
        log.info("server %s is running", command.server_id)
        await self._report(command, TaskState.SPAWNING, power=power)

    async def _destroy(self, command: DestroyServer) -> None:
        try:
            await self.driver.destroy(command.domain_name)
        except DriverError as exc:
            log.warning("destroying %s failed: %s", command.server_id, exc)
            await self._report(command, TaskState.DELETING, error=str(exc))
            return
        log.info("server %s is destroyed", command.server_id)
        await self._report(command, TaskState.DELETING, power=PowerState.NOSTATE)

    async def _report(
        self,
        command: SpawnServer | DestroyServer,
        task: TaskState,
        *,
        power: PowerState = PowerState.NOSTATE,
        error: str | None = None,
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
            ),
        )
