"""os-migrateLive (guide 3.1): ACTIVE -> MIGRATING -> ACTIVE on the host the request names,
or, without one (nova 2013.2), on the one the conductor's scheduler picks; the server running
all along.

What the gateway can know it checks at once and answers with 400, as the reference
implementation did: the destination is not the server's own host, exists, is enabled and
alive, runs the same hypervisor and has room now; without a host, that some other host is
(else nova's NoValidHost, 400). The live migration is then recorded
(``accepted``, with the server as it is, both hosts and the request's options) and goes to the
conductor, which checks all of that again when it claims the room, and drives the two hosts
from there (conductor/live_migration.py).
"""

from __future__ import annotations

import uuid

from api_gateway.compute.actions.plan import Locked, ThroughConductor
from api_gateway.compute.checks import ratios
from api_gateway.schemas.live_migration import LiveMigrate
from shared.db import live_migrations as live_db
from shared.db.hosts import Resources
from shared.db.pool import Conn
from shared.errors import Invalid
from shared.rpcapi import ConductorClient, Envelope


class LiveMigration(ThroughConductor):
    action = "os-migrateLive"

    def __init__(self, args: LiveMigrate) -> None:
        self.request = args
        self.migration_id = uuid.uuid4()

    async def prepare(self, locked: Locked) -> None:
        # one an os-resetState interrupted is over: its claim must not stay held (nor count
        # against the destination's room)
        await live_db.close_stale(locked.conn, locked.row.id)
        if self.request.host is None:
            await self._check_some_destination(locked)
        else:
            await self._check_destination(locked)
        await live_db.insert(
            locked.conn,
            live_db.NewLiveMigration(
                id=self.migration_id,
                server_id=locked.row.id,
                action_id=locked.action_id,
                source_host=locked.row.placed_host,
                dest_host=self.request.host,
                instance=await locked.spec(),
                block_migration=self.request.block_migration,
                disk_over_commit=self.request.disk_over_commit,
            ),
        )

    async def _check_some_destination(self, locked: Locked) -> None:
        """400 (nova's NoValidHost) when no other host could take the server now (a look:
        the conductor's scheduler picks and claims, and may still find none)."""
        row, settings = locked.row, locked.settings
        if not await live_db.candidates(
            locked.conn,
            source=row.placed_host,
            need=Resources(row.vcpus, row.ram_mb, row.disk_gb),
            ratios=ratios(settings),
            check_disk=not self.request.disk_over_commit,
            limit=1,
        ):
            raise Invalid(live_db.NO_VALID_HOST)

    async def _check_destination(self, locked: Locked) -> None:
        """400 when the destination cannot take the server now (a look, not a claim: the
        conductor claims, and may still find it full)."""
        row, settings = locked.row, locked.settings
        assert self.request.host is not None
        refusal = await live_db.target_refusal(
            locked.conn,
            server_id=row.id,
            source=row.placed_host,
            dest=self.request.host,
            down_after_s=settings.host_down_after_s,
        ) or await live_db.room_refusal(
            locked.conn,
            self.request.host,
            Resources(row.vcpus, row.ram_mb, row.disk_gb),
            ratios(settings),
            check_disk=not self.request.disk_over_commit,
        )
        if refusal is not None:
            raise Invalid(refusal)

    async def command(self, to: ConductorClient, envelope: Envelope) -> None:
        await to.live_migrate_server(envelope, self.migration_id)

    async def undo(self, conn: Conn) -> None:
        await live_db.discard(conn, self.migration_id)
