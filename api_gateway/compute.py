"""The gateway's domain layer: what creating, reading and deleting servers means.

Writes follow docs/architecture.md: one transaction (the server row, its task state and an action
record), then a command on the bus, and only once the broker has confirmed it does the client
get its 202. If the command cannot be sent, the transaction's effect is undone, so no server is
left in a task that nobody will ever finish.
"""

from __future__ import annotations

import logging
import secrets
import string
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from api_gateway import quotas
from api_gateway.context import RequestContext
from api_gateway.metadata import MetadataEdit, edited
from api_gateway.policy import Policy, check_unlocked, configured, operation_of
from api_gateway.schemas.servers import ServerCreate, ServerUpdate
from shared import bus as bus_mod
from shared.bus import Bus, PublishFailed
from shared.config import Settings
from shared.db import actions, flavors, hosts, images, servers
from shared.db import metadata as metadata_db
from shared.db.abandon import delete_locally
from shared.db.hosts import Ratios, Resources
from shared.db.pool import Conn
from shared.db.servers import ServerFilters
from shared.errors import (
    BackupOrResizeInProgress,
    BuildInProgress,
    CapacityUnavailable,
    Conflict,
    Invalid,
    NotFound,
    ServiceUnavailable,
)
from shared.messages import (
    ActionMessage,
    BuildServer,
    DestroyServer,
    FlavorSpec,
    ImageSpec,
    InstanceSpec,
)
from shared.sealing import Keyring
from shared.states import ACTIONS, TaskState, VmState, allowed

log = logging.getLogger(__name__)

_PASSWORD_ALPHABET = "".join(c for c in string.ascii_letters + string.digits if c not in "0OIl1")


def generate_password(length: int = 12) -> str:
    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(length))


def parse_uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"{what} could not be found.") from None


@dataclass(frozen=True)
class CreatedServer:
    id: uuid.UUID
    admin_pass: str


class ComputeAPI:
    def __init__(self, settings: Settings, pool: asyncpg.Pool, bus: Bus) -> None:
        self.settings = settings
        self.pool = pool
        self.bus = bus
        #: seals the admin passwords of commands (shared/sealing.py); a gateway without
        #: STRATUS_MESSAGE_KEY stops here rather than at its first build
        self.keyring = Keyring.from_setting(settings.message_key)

    @property
    def policy(self) -> Policy:
        """Who may do what (api_gateway/policy.py, with STRATUS_POLICY's overrides)."""
        return configured(self.settings.policy)

    # --- reads ---------------------------------------------------------------------------

    async def get_server(self, ctx: RequestContext, server_id: str) -> asyncpg.Record:
        row = await servers.get(self.pool, parse_uuid(server_id, "Instance"), ctx.server_scope)
        if row is None:
            raise NotFound("Instance could not be found.")
        return row

    async def list_servers(
        self,
        ctx: RequestContext,
        *,
        limit: int,
        marker: str | None,
        filters: ServerFilters | None,
        all_projects: bool = False,
    ) -> list[asyncpg.Record]:
        """One page of the project's servers matching ``filters`` (None: nothing can match,
        the page is empty; the marker is still checked); every project's for an
        administrator who asks (``all_tenants``, as in nova)."""
        tenant = None if all_projects and ctx.is_admin else ctx.project_id
        marker_id = None
        if marker is not None:
            marker_id = _marker_uuid(marker)
            if not await servers.exists(self.pool, marker_id, tenant):
                raise Invalid(f"marker [{marker}] not found")
        if filters is None:
            return []
        try:
            return await servers.list_page(
                self.pool, tenant, marker=marker_id, limit=limit, filters=filters
            )
        except asyncpg.InvalidRegularExpressionError as exc:
            raise Invalid(f"Invalid name filter (not a regular expression): {exc}") from None

    async def load_servers(
        self, ctx: RequestContext, server_ids: list[uuid.UUID]
    ) -> list[asyncpg.Record]:
        """Full rows of servers a list page named (only those the caller may reach)."""
        rows = await servers.get_many(self.pool, server_ids)
        scope = ctx.server_scope
        return [r for r in rows if scope is None or r["tenant_id"] == scope]

    # --- update --------------------------------------------------------------------------

    async def update_server(
        self, ctx: RequestContext, server_id: str, update: ServerUpdate
    ) -> asyncpg.Record:
        """Rename the server or change its access addresses (Table 2.2), in any state: these
        are the user's labels, no host is involved; but not on a locked server, unless the
        caller is an administrator. Returns the updated server."""
        self.policy.enforce(ctx, "servers:update")
        sid = parse_uuid(server_id, "Instance")
        async with self.pool.acquire() as conn, conn.transaction():
            check_unlocked(ctx, "servers:update", await self._locked(conn, ctx, sid))
            await servers.update_fields(conn, sid, update.changes())
            row = await servers.get(conn, sid, ctx.server_scope)
        assert row is not None  # updated in this transaction
        return row

    # --- metadata ------------------------------------------------------------------------

    async def server_metadata(self, ctx: RequestContext, server_id: str) -> dict[str, str]:
        """The server's metadata, in key order."""
        row = await self.get_server(ctx, server_id)
        return dict(sorted(row["metadata"].items()))

    async def edit_server_metadata(
        self, ctx: RequestContext, server_id: str, edit: MetadataEdit
    ) -> dict[str, str]:
        """Apply ``edit`` to the server's metadata under its row lock; returns the new set.

        Only in the states the reference implementation allowed (any task may run), and not
        on a locked server unless the caller is an administrator (409 otherwise).
        """
        self.policy.enforce(ctx, "servers:metadata")
        sid = parse_uuid(server_id, "Instance")
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self._locked(conn, ctx, sid)
            check_unlocked(ctx, "servers:metadata", row)
            _check_metadata_writable(row, edit)
            current = await metadata_db.read(conn, metadata_db.Table.SERVER, sid)
            new = edited(self.settings, edit, current)
            await metadata_db.write(conn, metadata_db.Table.SERVER, sid, current, new)
        return new

    # --- create --------------------------------------------------------------------------

    async def resolve_flavor(self, flavor_ref: str) -> asyncpg.Record:
        """The flavor a request names, else 400 (nova's answer for a bad flavorRef)."""
        flavor = await flavors.get(self.pool, flavor_ref)
        if flavor is None:
            raise Invalid("Invalid flavorRef provided.")
        return flavor

    async def resolve_image(self, ctx: RequestContext, image_ref: str) -> asyncpg.Record:
        """An active image the project may build from, else 400 (as the reference
        implementation answered for a missing image, rather than 404)."""
        try:
            image_id = uuid.UUID(image_ref)
        except ValueError:
            raise Invalid("Invalid imageRef provided.") from None
        image = await images.get(self.pool, image_id, ctx.project_id)
        if image is None:
            raise Invalid(f"Can not find requested image {image_ref}.")
        if image["status"] != "active":
            raise Invalid(f"Image {image_ref} is not active.")
        return image

    async def create_server(self, ctx: RequestContext, request: ServerCreate) -> CreatedServer:
        self.policy.enforce(ctx, "servers:create")
        quotas.check_create_request(self.settings, request)
        flavor = await self.resolve_flavor(request.flavor_ref)
        image = await self.resolve_image(ctx, request.image_ref)
        if flavor["ram_mb"] < image["min_ram_mb"]:
            raise Invalid("Flavor's memory is too small for requested image.")
        if flavor["disk_gb"] < image["min_disk_gb"]:
            raise Invalid("Flavor's disk is too small for requested image.")
        server = servers.NewServer(
            id=uuid.uuid4(),
            tenant_id=ctx.project_id,
            user_id=ctx.user_id,
            name=request.name,
            image_id=image["id"],
            flavor_id=flavor["id"],
            vcpus=flavor["vcpus"],
            ram_mb=flavor["ram_mb"],
            disk_gb=flavor["disk_gb"],
            access_ipv4=str(request.access_ipv4 or ""),
            access_ipv6=str(request.access_ipv6 or ""),
            metadata=request.metadata,
        )
        admin_pass = request.admin_pass or generate_password()
        action_id = uuid.uuid4()
        async with self.pool.acquire() as conn, conn.transaction():
            await quotas.check_instances(
                conn, self.settings, ctx.project_id, vcpus=server.vcpus, ram_mb=server.ram_mb
            )
            await check_capacity(
                conn,
                self.settings,
                Resources(server.vcpus, server.ram_mb, server.disk_gb),
                server.flavor_id,
            )
            await servers.insert(conn, server)
            await actions.record(
                conn,
                action_id=action_id,
                request_id=ctx.request_id,
                server_id=server.id,
                action="create",
                tenant_id=ctx.project_id,
                user_id=ctx.user_id,
            )
        build = BuildServer(
            request_id=ctx.request_id,
            server_id=server.id,
            action_id=action_id,
            admin_pass=BuildServer.seal_admin_pass(
                self.keyring, admin_pass, server_id=server.id, action_id=action_id
            ),
            instance=InstanceSpec(
                server_id=server.id,
                name=server.name,
                flavor=FlavorSpec(
                    id=flavor["id"],
                    name=flavor["name"],
                    vcpus=flavor["vcpus"],
                    ram_mb=flavor["ram_mb"],
                    disk_gb=flavor["disk_gb"],
                ),
                image=ImageSpec(
                    id=image["id"],
                    name=image["name"],
                    disk_format=image["disk_format"],
                    location=image["location"],
                    min_disk_gb=image["min_disk_gb"],
                    properties=dict(image["metadata"]),
                ),
                metadata=dict(request.metadata),
            ),
        )
        try:
            await self.bus.publish(bus_mod.CONDUCTOR, build)
        except PublishFailed as exc:
            log.error("could not send the build of %s: %s", server.id, exc)
            async with self.pool.acquire() as conn, conn.transaction():
                await servers.mark_deleted(conn, server.id)
                await actions.finish(conn, action_id, success=False, message=str(exc))
            raise ServiceUnavailable("The build could not be queued; try again later.") from exc
        return CreatedServer(server.id, admin_pass)

    # --- delete --------------------------------------------------------------------------

    async def start_action(
        self,
        ctx: RequestContext,
        server_id: str,
        action: str,
        *,
        prepare: Callable[[Conn, asyncpg.Record, uuid.UUID], Awaitable[None]] | None = None,
    ) -> tuple[asyncpg.Record, uuid.UUID]:
        """Begin ``action`` on a server in one transaction: lock the row, check the action is
        legal in its state now and that the server's lock does not refuse it to the caller
        (else 409), record the action and set its task state (if it has one).

        ``prepare`` runs last in the same transaction, with the locked row (as it was) and the
        action's id: it may refuse the action (raise, and nothing is written) or write what
        the action changes at once (a rebuild's new name, a snapshot's image row).

        Returns the row as it was (for its host and previous task) and the action's id; the
        caller sends the command with ``send_or_undo``.
        """
        sid = parse_uuid(server_id, "Instance")
        action_id = uuid.uuid4()
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self._locked(conn, ctx, sid)
            check_unlocked(ctx, operation_of(action), row)
            _check_allowed(row, action)
            await self._record(conn, ctx, sid, action, action_id)
            task = ACTIONS[action].task
            if task is not None:
                await servers.set_task(conn, sid, task.value)
            if prepare is not None:
                await prepare(conn, row, action_id)
        return row, action_id

    async def _locked(
        self, conn: Conn, ctx: RequestContext, server_id: uuid.UUID
    ) -> asyncpg.Record:
        row = await servers.lock(conn, server_id, ctx.server_scope)
        if row is None:
            raise NotFound("Instance could not be found.")
        return row

    async def _record(
        self,
        conn: Conn,
        ctx: RequestContext,
        server_id: uuid.UUID,
        action: str,
        action_id: uuid.UUID,
    ) -> None:
        await actions.record(
            conn,
            action_id=action_id,
            request_id=ctx.request_id,
            server_id=server_id,
            action=action,
            tenant_id=ctx.project_id,
            user_id=ctx.user_id,
        )

    async def send_or_undo(
        self,
        routing_key: str,
        command: ActionMessage,
        *,
        task: str | None,
        previous_task: str | None,
        undo: Callable[[Conn], Awaitable[None]] | None = None,
    ) -> None:
        """Publish ``command``; if the broker does not take it, put the task state back and
        close the action as failed, so the server is not left in a task nobody runs.

        ``undo`` takes back, in the same transaction and before the task state, what the
        action's ``prepare`` wrote."""
        try:
            await self.bus.publish(routing_key, command)
        except PublishFailed as exc:
            assert command.server_id is not None
            log.error("could not send %s to %s: %s", command.type, routing_key, exc)
            async with self.pool.acquire() as conn, conn.transaction():
                if undo is not None:
                    await undo(conn)
                if task is not None:
                    await servers.restore_task(
                        conn, command.server_id, task=task, previous=previous_task
                    )
                await actions.finish(conn, command.action_id, success=False, message=str(exc))
            raise ServiceUnavailable("The request could not be queued; try again later.") from exc

    # --- delete --------------------------------------------------------------------------

    async def delete_server(self, ctx: RequestContext, server_id: str) -> None:
        self.policy.enforce(ctx, "servers:delete")
        sid = parse_uuid(server_id, "Instance")
        action_id = uuid.uuid4()
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self._locked(conn, ctx, sid)
            check_unlocked(ctx, "servers:delete", row)
            if row["task_state"] == TaskState.DELETING:
                return  # a delete is already on its way
            _check_allowed(row, "delete")
            await self._record(conn, ctx, sid, "delete", action_id)
            host = row["host"]
            if host is None or not await hosts.is_alive(
                conn, host, self.settings.host_down_after_s
            ):
                await self._delete_locally(conn, row, action_id)
                return
            await servers.set_task(conn, sid, TaskState.DELETING.value)
        await self.send_or_undo(
            bus_mod.compute_queue(host),
            DestroyServer(
                request_id=ctx.request_id,
                server_id=sid,
                action_id=action_id,
                domain_name=f"instance-{sid}",
            ),
            task=TaskState.DELETING.value,
            previous_task=row["task_state"],
        )

    async def _delete_locally(self, conn: Conn, row: asyncpg.Record, action_id: uuid.UUID) -> None:
        """Delete a server no host holds (never scheduled) or whose host is down: nobody
        else could finish the delete, so waiting for an agent would leave it stuck."""
        if row["host"] is not None:
            log.warning("host %s is down: deleting server %s locally", row["host"], row["id"])
        await delete_locally(conn, row)
        await actions.finish(conn, action_id, success=True)


_BUSY_WITH_IMAGE_OR_RESIZE = {
    TaskState.IMAGE_SNAPSHOT,
    TaskState.IMAGE_BACKUP,
    TaskState.RESIZE_PREP,
    TaskState.RESIZE_MIGRATING,
    TaskState.RESIZE_MIGRATED,
    TaskState.RESIZE_FINISH,
    TaskState.RESIZE_REVERTING,
    TaskState.RESIZE_CONFIRMING,
}


async def check_capacity(conn: Conn, settings: Settings, need: Resources, flavor_id: str) -> None:
    """503 serverCapacityUnavailable when no live host could hold ``flavor`` even empty
    (the guide's answer to a build that can never be placed); a cloud that is merely full
    now still accepts it, and the build fails later with a fault if it stays full. Checked
    after the quotas: what the project may have comes before what the cloud can give."""
    ratios = Ratios(
        settings.cpu_allocation_ratio,
        settings.ram_allocation_ratio,
        settings.disk_allocation_ratio,
    )
    if not await hosts.could_ever_fit(conn, need, ratios, settings.host_down_after_s):
        raise CapacityUnavailable(f"No compute host can take flavor {flavor_id} now.")


def _check_allowed(row: asyncpg.Record, action: str) -> None:
    """409 unless ``action`` may start in the server's current state (shared/states.py),
    named as the guide names it: buildInProgress while building, backupOrResizeInProgress
    while an image or a resize is under way, conflictingRequest otherwise."""
    if allowed(action, row["vm_state"], row["task_state"]):
        return
    blocker = (
        f"task_state {row['task_state']}"
        if row["task_state"] is not None
        else f"vm_state {row['vm_state']}"
    )
    message = f"Cannot '{action}' while instance is in {blocker}"
    if row["vm_state"] == VmState.BUILDING:
        raise BuildInProgress(message)
    if row["task_state"] in _BUSY_WITH_IMAGE_OR_RESIZE or row["vm_state"] == VmState.RESIZED:
        raise BackupOrResizeInProgress(message)
    raise Conflict(message)


#: vm_states in which a server's metadata may change (docs/architecture.md, *State*); any task may run.
_METADATA_WRITABLE = frozenset({VmState.ACTIVE, VmState.PAUSED, VmState.SUSPENDED, VmState.STOPPED})


def _check_metadata_writable(row: asyncpg.Record, edit: MetadataEdit) -> None:
    """409 when the server's state forbids changing its metadata now."""
    verb = "delete metadata" if not edit.grows else "update metadata"
    if row["vm_state"] not in _METADATA_WRITABLE:
        message = f"Cannot '{verb}' while instance is in vm_state {row['vm_state']}"
        if row["vm_state"] == VmState.BUILDING:
            raise BuildInProgress(message)
        raise Conflict(message)


def _marker_uuid(marker: str) -> uuid.UUID:
    try:
        return uuid.UUID(marker)
    except ValueError:
        raise Invalid(f"marker [{marker}] not found") from None
