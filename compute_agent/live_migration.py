"""The compute agent's side of live migrations: what each step's command does here.

The conductor drives a live migration one step at a time (conductor/live_migration.py); the
agent runs the step its command names through the virt driver and reports the outcome as it
reports every command's (compute_agent/reporting.py), under the server's lock like every
other command, so the steps of one server never overlap on a host; the driver makes each of
them safe to run twice.
"""

from __future__ import annotations

from compute_agent.reporting import Done
from compute_agent.virt.driver import ComputeDriver, DriverError
from shared.messages import (
    CleanUpLiveMigration,
    FinishLiveMigration,
    InstanceSpec,
    LiveMigrate,
    PrepareLiveMigration,
    RecoverLiveMigration,
    RollBackLiveMigration,
)
from shared.states import PowerState


class LiveMigrationSteps:
    def __init__(self, driver: ComputeDriver) -> None:
        self.driver = driver

    async def prepare(self, command: PrepareLiveMigration) -> Done:
        """Destination, step 1."""
        await self.driver.prepare_live_migration(
            command.instance, block_migration=command.block_migration
        )
        return Done()

    async def migrate(self, command: LiveMigrate) -> Done:
        """Source, step 2: the server moves while it runs; a hypervisor that cannot move it
        gives its definition instead (the handover)."""
        handover = await self.driver.live_migrate(
            command.instance,
            command.dest_host,
            command.dest_uri,
            block_migration=command.block_migration,
        )
        return Done(await self._power(command.instance), handover=handover)

    async def finish(self, command: FinishLiveMigration) -> Done:
        """Destination, step 3: the server runs here."""
        return Done(
            await self.driver.finish_live_migration(command.instance, handover=command.handover)
        )

    async def clean_up(self, command: CleanUpLiveMigration) -> Done:
        """Source, step 4: nothing of the server stays here."""
        await self.driver.clean_up_live_migration(
            command.instance, block_migration=command.block_migration
        )
        return Done()

    async def recover(self, command: RecoverLiveMigration) -> Done:
        """Source, after a failure: the server runs here again."""
        return Done(await self.driver.recover_live_migration(command.instance))

    async def roll_back(self, command: RollBackLiveMigration) -> Done:
        """Destination, after a failure: nothing of the server stays here."""
        await self.driver.roll_back_live_migration(
            command.instance, block_migration=command.block_migration
        )
        return Done()

    async def _power(self, instance: InstanceSpec) -> PowerState:
        """The server's power state here once it has left; NOSTATE if it cannot be told."""
        try:
            return await self.driver.power_state(instance.domain_name)
        except DriverError:
            return PowerState.NOSTATE
