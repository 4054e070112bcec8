"""resize, confirmResize, revertResize (guide 2.3.4–2.3.6) and migrate (guide 3.1).

A resize is recorded (``pre-migrating``, with the server's spec and both flavors) and goes to
the conductor, which chooses its destination and drives the hosts to VERIFY_RESIZE
(conductor/resize.py). A migrate is a resize to the server's own flavor that must change
host. Confirm and revert then go to the hosts the record names: confirm to the source, which
discards the original; revert to the destination, which removes the resized copy (or, after a
resize on one host, to that host, which runs the original again with the old flavor).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from api_gateway.compute import quotas
from api_gateway.compute.actions.plan import ActionPlan, Locked, ThroughConductor, gathered
from api_gateway.compute.checks import check_capacity, ratios
from api_gateway.compute.specs import instance_spec
from api_gateway.context import RequestContext
from api_gateway.schemas import server_actions as schema
from shared import rpcapi
from shared.db import hosts
from shared.db import server_migrations as migrations
from shared.db.hosts import Resources
from shared.db.pool import Conn
from shared.db.records import LockedServer, Migration
from shared.errors import Invalid, ResizeNotAllowed
from shared.messages import FlavorSpec, InstanceSpec
from shared.rpcapi import Clients, ComputeClient, ConductorClient, Envelope

if TYPE_CHECKING:
    from api_gateway.compute.api import ComputeAPI


class _Placed(ThroughConductor):
    """A resize or migration: recorded here, placed by the conductor."""

    def __init__(self) -> None:
        self.migration_id = uuid.uuid4()

    async def _record(self, locked: Locked, instance: InstanceSpec, new_flavor: FlavorSpec) -> None:
        await migrations.insert(
            locked.conn,
            migrations.NewMigration(
                id=self.migration_id,
                server_id=locked.row.id,
                action_id=locked.action_id,
                source_host=locked.row.placed_host,
                instance=instance,
                new_flavor=new_flavor,
            ),
        )

    async def command(self, to: ConductorClient, envelope: Envelope) -> None:
        await to.resize_server(envelope, self.migration_id)

    async def undo(self, conn: Conn) -> None:
        await migrations.discard(conn, self.migration_id)


class Resize(_Placed):
    """ACTIVE -> RESIZE -> VERIFY_RESIZE with another flavor: the flavor must really change,
    the disk may not shrink (403), and the project's quota must allow the growth (413)."""

    action = "resize"

    def __init__(self, args: schema.Resize) -> None:
        super().__init__()
        self.flavor_ref = args.flavor_ref
        self.flavor: FlavorSpec | None = None
        self.disabled = False

    async def check(self, compute: ComputeAPI, ctx: RequestContext) -> None:
        flavor = await compute.resolve_flavor(self.flavor_ref)
        self.flavor, self.disabled = rpcapi.flavor_spec(flavor), flavor.disabled

    async def prepare(self, locked: Locked) -> None:
        flavor, row = gathered(self.flavor), locked.row
        server = await locked.server()
        if server.flavor_id == flavor.id:
            raise Invalid("Resize requires a flavor change.")
        if self.disabled:  # OS-FLV-DISABLED: nova's answer for a disabled flavor
            raise Invalid("Unable to locate requested flavor.")
        if flavor.disk_gb < row.disk_gb:
            raise ResizeNotAllowed("Resizing to a flavor with a smaller disk is not allowed.")
        await quotas.check_resize(
            locked.conn,
            locked.settings,
            row.tenant_id,
            flavor.vcpus - row.vcpus,
            flavor.ram_mb - row.ram_mb,
        )
        need = Resources(flavor.vcpus, flavor.ram_mb, flavor.disk_gb)
        await check_capacity(locked.conn, locked.settings, need, flavor.id)
        await self._record(locked, await instance_spec(locked.conn, server), flavor)


class Migrate(_Placed):
    """ACTIVE -> RESIZE -> VERIFY_RESIZE on another host, same flavor; 400 when no other host
    could ever take the server (a one-host cloud has nowhere to migrate to)."""

    action = "migrate"

    async def prepare(self, locked: Locked) -> None:
        row, settings = locked.row, locked.settings
        need = Resources(row.vcpus, row.ram_mb, row.disk_gb)
        if not await hosts.could_ever_fit(
            locked.conn,
            need,
            ratios(settings),
            settings.host_down_after_s,
            exclude=[row.placed_host],
        ):
            raise Invalid(
                f"No compute host other than {row.host} can take the server: "
                "a migration needs another host that is up and big enough for its flavor."
            )
        spec = await locked.spec()
        await self._record(locked, spec, spec.flavor)


class _Finishing(ActionPlan[ComputeClient]):
    """Confirm and revert need a resize waiting for them: a server in VERIFY_RESIZE has one;
    if the record says otherwise, 400 as the reference implementation answered. Their
    commands go to the hosts the record names, not to the server's."""

    needs_host = False

    def __init__(self) -> None:
        self.migration: Migration | None = None

    async def prepare(self, locked: Locked) -> None:
        migration = await migrations.open_for(locked.conn, locked.row.id)
        if migration is None or migration.status != migrations.Status.FINISHED:
            raise Invalid("Instance has not been resized.")
        self.migration = migration


class ConfirmResize(_Finishing):
    """VERIFY_RESIZE -> ACTIVE: the source host discards the original."""

    action = "confirmResize"

    def route(self, clients: Clients, row: LockedServer) -> ComputeClient:
        return clients.compute(gathered(self.migration).source_host)

    async def command(self, to: ComputeClient, envelope: Envelope) -> None:
        migration = gathered(self.migration)
        await to.confirm_resize(envelope, migration.id, migration.placed_dest)


class RevertResize(_Finishing):
    """VERIFY_RESIZE -> REVERT_RESIZE -> ACTIVE with the old flavor, on the old host.

    After a resize to another host, that host first removes the resized copy (the conductor
    then restarts the original); on the same host the original is simply defined and started
    again with the old flavor.
    """

    action = "revertResize"

    def route(self, clients: Clients, row: LockedServer) -> ComputeClient:
        return clients.compute(gathered(self.migration).placed_dest)

    async def command(self, to: ComputeClient, envelope: Envelope) -> None:
        migration = gathered(self.migration)
        if migrations.same_host(migration):
            instance = migrations.instance_before(migration)
            await to.finish_revert_resize(envelope, migration.id, instance)
        else:
            await to.revert_resize(envelope, migration.id)
