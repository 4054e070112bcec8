"""What the server actions of chapter 2 mean (guide 2.3.1–2.3.7).

Each action is docs/architecture.md through ``ComputeAPI``: ``start_action`` locks the server's row,
checks the action against the transition table (409), records it and sets its task state,
then runs the action's own ``prepare`` in that transaction (further checks, and what the
action changes at once); ``send_or_undo`` publishes the command, or takes all of that back.

Host-local actions (changePassword, reboot, rebuild, createImage, and confirm/revert of a
resize) go straight to the host's queue; a resize goes to the conductor, which must choose
its destination first.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypedDict

import asyncpg

from api_gateway import quotas
from api_gateway.compute import ComputeAPI, check_capacity, generate_password
from api_gateway.context import RequestContext
from api_gateway.schemas.server_actions import CreateImage, Rebuild
from shared import bus as bus_mod
from shared.config import Settings
from shared.db import flavors, images, servers
from shared.db import metadata as metadata_db
from shared.db import server_migrations as migrations
from shared.db.hosts import Resources
from shared.db.pool import Conn
from shared.errors import Conflict, Invalid, ResizeNotAllowed
from shared.messages import (
    ActionMessage,
    ChangePassword,
    ConfirmResize,
    FinishRevertResize,
    FlavorSpec,
    ImageSpec,
    InstanceSpec,
    RebootServer,
    RebuildServer,
    ResizeServer,
    RevertResize,
    SnapshotServer,
)
from shared.states import ACTIONS, TaskState

#: Takes back, should its command not be queued, what an action's ``prepare`` wrote.
Undo = Callable[[Conn], Awaitable[None]]


@dataclass(frozen=True)
class Rebuilt:
    """The server as the rebuild left it in the database (status REBUILD), and the password
    the response shows once."""

    server: asyncpg.Record
    admin_pass: str


class ServerActions:
    def __init__(self, compute: ComputeAPI) -> None:
        self.compute = compute
        self.pool = compute.pool
        self.settings = compute.settings

    # --- host-local actions --------------------------------------------------------------

    async def change_password(self, ctx: RequestContext, server_id: str, password: str) -> None:
        """ACTIVE (or ERROR, to retry a failed change) -> PASSWORD -> ACTIVE."""
        plan = _HostCommand(ctx, "changePassword")
        row, action_id = await self.compute.start_action(
            ctx, server_id, "changePassword", prepare=plan.prepare
        )
        await self._send(
            row,
            "changePassword",
            ChangePassword(
                **_envelope(ctx, row, action_id),
                domain_name=_domain_name(row),
                admin_pass=ChangePassword.seal_admin_pass(
                    self.compute.keyring, password, server_id=row["id"], action_id=action_id
                ),
            ),
        )

    async def reboot(self, ctx: RequestContext, server_id: str, *, hard: bool) -> None:
        """ACTIVE -> REBOOT (SOFT) or HARD_REBOOT (HARD) -> ACTIVE."""
        action = "reboot_hard" if hard else "reboot"
        plan = _HostCommand(ctx, "reboot", with_spec=True)
        row, action_id = await self.compute.start_action(
            ctx, server_id, action, prepare=plan.prepare
        )
        await self._send(
            row,
            action,
            RebootServer(**_envelope(ctx, row, action_id), instance=plan.spec, hard=hard),
        )

    async def rebuild(self, ctx: RequestContext, server_id: str, request: Rebuild) -> Rebuilt:
        """ACTIVE -> REBUILD -> ACTIVE: same id and addresses, new image; the name, metadata
        and access addresses given replace the server's at once."""
        quotas.check_metadata_items(self.settings, len(request.metadata or {}))
        quotas.check_personality(self.settings, request.personality)
        image = await self.compute.resolve_image(ctx, request.image_ref)
        plan = _RebuildPlan(ctx, request, image)
        row, action_id = await self.compute.start_action(
            ctx, server_id, "rebuild", prepare=plan.prepare
        )
        admin_pass = request.admin_pass or generate_password()
        sealed = RebuildServer.seal_admin_pass(
            self.compute.keyring, admin_pass, server_id=row["id"], action_id=action_id
        )
        await self._send(
            row,
            "rebuild",
            RebuildServer(**_envelope(ctx, row, action_id), instance=plan.spec, admin_pass=sealed),
            undo=plan.undo,
        )
        return Rebuilt(plan.server, admin_pass)

    async def create_image(
        self, ctx: RequestContext, server_id: str, request: CreateImage
    ) -> uuid.UUID:
        """A new image (SAVING -> ACTIVE) from the server, which keeps its status; returns
        the image's id."""
        quotas.check_metadata_items(self.settings, len(request.metadata))
        plan = SnapshotPlan(ctx, request.name, request.metadata)
        row, action_id = await self.compute.start_action(
            ctx, server_id, "createImage", prepare=plan.prepare
        )
        await self._send(
            row,
            "createImage",
            SnapshotServer(
                **_envelope(ctx, row, action_id),
                domain_name=_domain_name(row),
                image_id=plan.image_id,
                disk_format=plan.disk_format,
            ),
            undo=plan.undo,
        )
        return plan.image_id

    # --- resize --------------------------------------------------------------------------

    async def resize(self, ctx: RequestContext, server_id: str, flavor_ref: str) -> None:
        """ACTIVE -> RESIZE -> VERIFY_RESIZE, through the conductor, which picks the host."""
        flavor = await self.compute.resolve_flavor(flavor_ref)
        plan = _ResizePlan(ctx, self.settings, _flavor_spec(flavor))
        row, action_id = await self.compute.start_action(
            ctx, server_id, "resize", prepare=plan.prepare
        )
        await self._send(
            row,
            "resize",
            ResizeServer(**_envelope(ctx, row, action_id), migration_id=plan.migration_id),
            routing_key=bus_mod.CONDUCTOR,
            undo=plan.undo,
        )

    async def confirm_resize(self, ctx: RequestContext, server_id: str) -> None:
        """VERIFY_RESIZE -> ACTIVE: the source host discards the original."""
        plan = _FinishedResize(ctx)
        row, action_id = await self.compute.start_action(
            ctx, server_id, "confirmResize", prepare=plan.prepare
        )
        await self._send(
            row,
            "confirmResize",
            ConfirmResize(
                **_envelope(ctx, row, action_id),
                migration_id=plan.migration["id"],
                domain_name=_domain_name(row),
                dest_host=plan.migration["dest_host"],
            ),
            routing_key=bus_mod.compute_queue(plan.migration["source_host"]),
        )

    async def revert_resize(self, ctx: RequestContext, server_id: str) -> None:
        """VERIFY_RESIZE -> REVERT_RESIZE -> ACTIVE with the old flavor, on the old host.

        After a resize to another host, that host first removes the resized copy (the
        conductor then restarts the original); on the same host the original is simply
        defined and started again with the old flavor.
        """
        plan = _FinishedResize(ctx)
        row, action_id = await self.compute.start_action(
            ctx, server_id, "revertResize", prepare=plan.prepare
        )
        migration = plan.migration
        command: ActionMessage
        if migrations.same_host(migration):
            command = FinishRevertResize(
                **_envelope(ctx, row, action_id),
                migration_id=migration["id"],
                instance=migrations.instance_before(migration),
            )
        else:
            command = RevertResize(
                **_envelope(ctx, row, action_id),
                migration_id=migration["id"],
                domain_name=_domain_name(row),
            )
        await self._send(
            row,
            "revertResize",
            command,
            routing_key=bus_mod.compute_queue(migration["dest_host"]),
        )

    # --- helpers -------------------------------------------------------------------------

    async def _send(
        self,
        row: asyncpg.Record,
        action: str,
        command: ActionMessage,
        *,
        routing_key: str | None = None,
        undo: Undo | None = None,
    ) -> None:
        """Publish ``command`` (to the server's host unless told otherwise), or undo the
        action's start."""
        task = ACTIONS[action].task
        await self.compute.send_or_undo(
            routing_key or bus_mod.compute_queue(row["host"]),
            command,
            task=task.value if task is not None else None,
            previous_task=row["task_state"],
            undo=undo,
        )


# --- what each action gathers and writes under the row lock ---------------------------------


class _HostCommand:
    """A command for the server's host: refused for a server on no host (never built).
    Gathers the server's spec when the command carries it. (A locked server's refusal is
    ``start_action``'s, for every action alike.)"""

    def __init__(self, ctx: RequestContext, action: str, *, with_spec: bool = False) -> None:
        self.ctx = ctx
        self.action = action
        self.with_spec = with_spec
        self._spec: InstanceSpec | None = None

    async def prepare(self, conn: Conn, row: asyncpg.Record, action_id: uuid.UUID) -> None:
        _check_on_a_host(row, self.action)
        if self.with_spec:
            self._spec = await instance_spec(conn, await _server(conn, row))

    @property
    def spec(self) -> InstanceSpec:
        assert self._spec is not None, "gathered by the action's prepare"
        return self._spec


@dataclass(frozen=True)
class _Labels:
    """What a rebuild replaces on the server itself, to put back if it is not sent."""

    image_id: uuid.UUID
    progress: int
    fields: dict[str, str]
    metadata: dict[str, str]


class _RebuildPlan:
    """Points the server at the new image and replaces the labels given, at once (the 202
    shows them); checks that the server's flavor is big enough for the image."""

    def __init__(self, ctx: RequestContext, request: Rebuild, image: asyncpg.Record) -> None:
        self.ctx = ctx
        self.request = request
        self.image = image
        self._server: asyncpg.Record | None = None
        self._spec: InstanceSpec | None = None
        self._previous: _Labels | None = None

    async def prepare(self, conn: Conn, row: asyncpg.Record, action_id: uuid.UUID) -> None:
        _check_on_a_host(row, "rebuild")
        _check_fits(row, self.image)
        before = await _server(conn, row)
        self._previous = _Labels(
            image_id=before["image_id"],
            progress=before["progress"],
            fields={
                "name": before["name"],
                "access_ipv4": before["access_ipv4"],
                "access_ipv6": before["access_ipv6"],
            },
            metadata=dict(before["metadata"]),
        )
        await servers.set_image(conn, row["id"], self.image["id"], progress=0)
        changes = self.request.access_changes()
        if self.request.name is not None:
            changes["name"] = self.request.name
        if changes:
            await servers.update_fields(conn, row["id"], changes)
        if self.request.metadata is not None:
            await metadata_db.write(
                conn, metadata_db.Table.SERVER, row["id"], before["metadata"], self.request.metadata
            )
        self._server = await _server(conn, row)
        self._spec = await instance_spec(conn, self._server, image=self.image)

    async def undo(self, conn: Conn) -> None:
        """Put the old image and labels back, unless the server moved on meanwhile."""
        assert self._server is not None and self._previous is not None
        server_id = self._server["id"]
        row = await servers.lock(conn, server_id, None)
        if row is None or row["task_state"] != TaskState.REBUILDING:
            return
        previous = self._previous
        await servers.set_image(conn, server_id, previous.image_id, progress=previous.progress)
        await servers.update_fields(conn, server_id, previous.fields)
        current = await metadata_db.read(conn, metadata_db.Table.SERVER, server_id)
        await metadata_db.write(
            conn, metadata_db.Table.SERVER, server_id, current, previous.metadata
        )

    @property
    def server(self) -> asyncpg.Record:
        assert self._server is not None, "gathered by the action's prepare"
        return self._server

    @property
    def spec(self) -> InstanceSpec:
        assert self._spec is not None, "gathered by the action's prepare"
        return self._spec


class SnapshotPlan:
    """Records the new image (SAVING, owned by the project, made from this server). Its
    minimum disk and RAM are the base image's, as the reference implementation set them.
    With ``backup`` the image is a backup (createBackup), else a snapshot (createImage)."""

    def __init__(
        self,
        ctx: RequestContext,
        name: str,
        metadata: Mapping[str, str],
        *,
        backup: images.Backup | None = None,
    ) -> None:
        self.ctx = ctx
        self.name = name
        self.metadata = dict(metadata)
        self.backup = backup
        self.image_id = uuid.uuid4()
        self.disk_format = "qcow2"

    async def prepare(self, conn: Conn, row: asyncpg.Record, action_id: uuid.UUID) -> None:
        _check_on_a_host(row, "createImage" if self.backup is None else "createBackup")
        server = await _server(conn, row)
        base = await images.get_any(conn, server["image_id"])
        if base is not None:
            self.disk_format = base["disk_format"]
        await images.insert_snapshot(
            conn,
            images.NewSnapshot(
                id=self.image_id,
                name=self.name,
                owner=row["tenant_id"],
                user_id=self.ctx.user_id,
                server_id=row["id"],
                min_disk_gb=base["min_disk_gb"] if base is not None else 0,
                min_ram_mb=base["min_ram_mb"] if base is not None else 0,
                disk_format=self.disk_format,
                metadata=self.metadata,
            ),
            self.backup,
        )

    async def undo(self, conn: Conn) -> None:
        await images.discard_snapshot(conn, self.image_id)


class _ResizePlan:
    """Checks the flavor really changes and the project's quota allows the growth, and
    records the resize (``pre-migrating``) with everything its later steps need."""

    def __init__(self, ctx: RequestContext, settings: Settings, flavor: FlavorSpec) -> None:
        self.ctx = ctx
        self.settings = settings
        self.flavor = flavor
        self.migration_id = uuid.uuid4()

    async def prepare(self, conn: Conn, row: asyncpg.Record, action_id: uuid.UUID) -> None:
        _check_on_a_host(row, "resize")
        server = await _server(conn, row)
        if server["flavor_id"] == self.flavor.id:
            raise Invalid("Resize requires a flavor change.")
        if self.flavor.disk_gb < row["disk_gb"]:
            raise ResizeNotAllowed("Resizing to a flavor with a smaller disk is not allowed.")
        await quotas.check_resize(
            conn,
            self.settings,
            row["tenant_id"],
            self.flavor.vcpus - row["vcpus"],
            self.flavor.ram_mb - row["ram_mb"],
        )
        need = Resources(self.flavor.vcpus, self.flavor.ram_mb, self.flavor.disk_gb)
        await check_capacity(conn, self.settings, need, self.flavor.id)
        await migrations.insert(
            conn,
            migrations.NewMigration(
                id=self.migration_id,
                server_id=row["id"],
                action_id=action_id,
                source_host=row["host"],
                instance=await instance_spec(conn, server),
                new_flavor=self.flavor,
            ),
        )

    async def undo(self, conn: Conn) -> None:
        await migrations.discard(conn, self.migration_id)


class _FinishedResize:
    """Confirm and revert need a resize waiting for them: a server in VERIFY_RESIZE has one;
    if the record says otherwise, 400 as the reference implementation answered."""

    def __init__(self, ctx: RequestContext) -> None:
        self.ctx = ctx
        self._migration: asyncpg.Record | None = None

    async def prepare(self, conn: Conn, row: asyncpg.Record, action_id: uuid.UUID) -> None:
        migration = await migrations.open_for(conn, row["id"])
        if migration is None or migration["status"] != migrations.Status.FINISHED:
            raise Invalid("Instance has not been resized.")
        self._migration = migration

    @property
    def migration(self) -> asyncpg.Record:
        assert self._migration is not None, "gathered by the action's prepare"
        return self._migration


# --- shared checks and specs ----------------------------------------------------------------


def _check_on_a_host(row: asyncpg.Record, action: str) -> None:
    """A server whose build never reached a host (ERROR before scheduling) has nothing an
    agent could act on."""
    if row["host"] is None:
        raise Conflict(f"Cannot '{action}' an instance that is on no host")


def _check_fits(row: asyncpg.Record, image: asyncpg.Record) -> None:
    if row["ram_mb"] < image["min_ram_mb"]:
        raise Invalid("Flavor's memory is too small for requested image.")
    if row["disk_gb"] < image["min_disk_gb"]:
        raise Invalid("Flavor's disk is too small for requested image.")


async def _server(conn: Conn, row: asyncpg.Record) -> asyncpg.Record:
    """The full row of a server whose row is locked by this transaction."""
    server = await servers.get(conn, row["id"], None)
    assert server is not None, "locked in this transaction"
    return server


class _Envelope(TypedDict):
    request_id: str
    server_id: uuid.UUID
    action_id: uuid.UUID


def _envelope(ctx: RequestContext, row: asyncpg.Record, action_id: uuid.UUID) -> _Envelope:
    return {"request_id": ctx.request_id, "server_id": row["id"], "action_id": action_id}


def _domain_name(row: asyncpg.Record) -> str:
    return f"instance-{row['id']}"


def _flavor_spec(flavor: asyncpg.Record) -> FlavorSpec:
    return FlavorSpec(
        id=flavor["id"],
        name=flavor["name"],
        vcpus=flavor["vcpus"],
        ram_mb=flavor["ram_mb"],
        disk_gb=flavor["disk_gb"],
    )


async def instance_spec(
    conn: Conn, server: asyncpg.Record, *, image: asyncpg.Record | None = None
) -> InstanceSpec:
    """What an agent needs to (re)build ``server`` (a full row): its flavor as the server
    holds it (the row's own copy of the sizes), and ``image`` or the one it was built from."""
    flavor = await flavors.get(conn, server["flavor_id"])
    image = image or await images.get_any(conn, server["image_id"])
    return InstanceSpec(
        server_id=server["id"],
        name=server["name"],
        flavor=FlavorSpec(
            id=server["flavor_id"],
            name=flavor["name"] if flavor is not None else server["flavor_id"],
            vcpus=server["vcpus"],
            ram_mb=server["ram_mb"],
            disk_gb=server["disk_gb"],
        ),
        image=_image_spec(image, server["image_id"]),
        metadata=dict(server["metadata"]),
    )


def _image_spec(image: asyncpg.Record | None, image_id: uuid.UUID) -> ImageSpec:
    if image is None:  # purged from the database: only its id is known
        return ImageSpec(id=image_id, name="")
    return ImageSpec(
        id=image["id"],
        name=image["name"],
        disk_format=image["disk_format"],
        location=image["location"],
        min_disk_gb=image["min_disk_gb"],
        properties=dict(image["metadata"]),
    )
