"""The compute agent's side of live migrations: one step per command, each reported.

The conductor drives a live migration one step at a time (conductor/live_migration.py); the
agent runs the step its command names through the virt driver and reports the outcome as a
``LiveMigrationReport`` of that step, whatever it is. ``AgentService`` composes this class
and runs its methods under the server's lock, like every other command, so the steps of one
server never overlap on a host; the driver makes each of them safe to run twice.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from compute_agent.virt.driver import ComputeDriver, DriverError
from shared import bus as bus_mod
from shared.bus import Bus
from shared.messages import (
    CleanUpLiveMigration,
    Fault,
    FinishLiveMigration,
    LiveMigrate,
    LiveMigrationReport,
    LiveMigrationStep,
    PrepareLiveMigration,
    RecoverLiveMigration,
    RollBackLiveMigration,
)
from shared.states import PowerState

log = logging.getLogger(__name__)

Command = (
    PrepareLiveMigration
    | LiveMigrate
    | FinishLiveMigration
    | CleanUpLiveMigration
    | RecoverLiveMigration
    | RollBackLiveMigration
)


@dataclass(frozen=True)
class _Done:
    """What a step leaves: the server's power state on this host, and for the source's
    ``migrate`` step the handover a hypervisor that cannot migrate gives instead."""

    power: PowerState
    handover: str | None = None


class LiveMigrationAgent:
    def __init__(self, host: str, bus: Bus, driver: ComputeDriver) -> None:
        self.host = host
        self.bus = bus
        self.driver = driver

    async def prepare(self, command: PrepareLiveMigration) -> None:
        """Destination, step 1."""

        async def prepare() -> _Done:
            await self.driver.prepare_live_migration(
                command.instance, block_migration=command.block_migration
            )
            return _Done(PowerState.NOSTATE)

        await self._step(command, "prepare", prepare)

    async def migrate(self, command: LiveMigrate) -> None:
        """Source, step 2: the server moves while it runs."""

        async def migrate() -> _Done:
            handover = await self.driver.live_migrate(
                command.instance,
                command.dest_host,
                command.dest_uri,
                block_migration=command.block_migration,
            )
            return _Done(await self._power(command), handover)

        await self._step(command, "migrate", migrate)

    async def finish(self, command: FinishLiveMigration) -> None:
        """Destination, step 3: the server runs here."""

        async def finish() -> _Done:
            return _Done(
                await self.driver.finish_live_migration(command.instance, handover=command.handover)
            )

        await self._step(command, "finish", finish)

    async def clean_up(self, command: CleanUpLiveMigration) -> None:
        """Source, step 4: nothing of the server stays here."""

        async def clean_up() -> _Done:
            await self.driver.clean_up_live_migration(
                command.instance, block_migration=command.block_migration
            )
            return _Done(PowerState.NOSTATE)

        await self._step(command, "clean_up", clean_up)

    async def recover(self, command: RecoverLiveMigration) -> None:
        """Source, after a failure: the server runs here again."""

        async def recover() -> _Done:
            return _Done(await self.driver.recover_live_migration(command.instance))

        await self._step(command, "recover", recover)

    async def roll_back(self, command: RollBackLiveMigration) -> None:
        """Destination, after a failure: nothing of the server stays here."""

        async def roll_back() -> _Done:
            await self.driver.roll_back_live_migration(
                command.instance, block_migration=command.block_migration
            )
            return _Done(PowerState.NOSTATE)

        await self._step(command, "roll_back", roll_back)

    # --- running and reporting -----------------------------------------------------------

    async def _step(
        self, command: Command, step: LiveMigrationStep, work: Callable[[], Awaitable[_Done]]
    ) -> None:
        """Do ``work`` and report its outcome as the end of ``step``."""
        try:
            done = await work()
        except DriverError as exc:
            log.warning("live migration step %s of %s failed: %s", step, command.server_id, exc)
            await self._report(command, step, _Done(await self._power(command)), error=str(exc))
            return
        log.info("live migration step %s of %s done", step, command.server_id)
        await self._report(command, step, done)

    async def _power(self, command: Command) -> PowerState:
        """The server's power state here (after a failed step, or where the step itself does
        not say); NOSTATE if it cannot be told."""
        try:
            return await self.driver.power_state(command.instance.domain_name)
        except DriverError:
            return PowerState.NOSTATE

    async def _report(
        self, command: Command, step: LiveMigrationStep, done: _Done, *, error: str | None = None
    ) -> None:
        await self.bus.publish(
            bus_mod.REPORTS,
            LiveMigrationReport(
                request_id=command.request_id,
                server_id=command.server_id,
                action_id=command.action_id,
                migration_id=command.migration_id,
                step=step,
                host=self.host,
                success=error is None,
                power_state=int(done.power),
                fault=Fault(code=500, message=error) if error is not None else None,
                handover=done.handover,
            ),
        )
