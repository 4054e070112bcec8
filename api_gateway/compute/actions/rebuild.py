"""rebuild (guide 2.3.3): ACTIVE -> REBUILD -> ACTIVE, the same server (id, addresses) built
again from a new image.

The name, metadata and access addresses the request gives replace the server's at once, so
the 202 shows them; should the command not be queued, the old ones are put back.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from api_gateway.compute import quotas
from api_gateway.compute.actions.plan import Locked, OnItsHost, gathered
from api_gateway.compute.checks import check_fits
from api_gateway.compute.passwords import generate_password
from api_gateway.compute.specs import injected_files, instance_spec
from api_gateway.context import RequestContext
from api_gateway.schemas import server_actions as schema
from shared.db import metadata as metadata_db
from shared.db import servers
from shared.db.pool import Conn
from shared.db.records import Image, Server
from shared.messages import InjectedFile, InstanceSpec
from shared.rpcapi import ComputeClient, Envelope
from shared.states import TaskState

if TYPE_CHECKING:
    from api_gateway.compute.api import ComputeAPI


@dataclass(frozen=True)
class _Labels:
    """What a rebuild replaces on the server itself, to put back if it is not sent."""

    image_id: uuid.UUID
    progress: int
    fields: dict[str, str]
    metadata: dict[str, str]
    #: the personality files its config drive delivered
    files: tuple[InjectedFile, ...]

    @classmethod
    def of(cls, server: Server, files: tuple[InjectedFile, ...]) -> _Labels:
        return cls(
            image_id=server.image_id,
            progress=server.progress,
            fields={
                "name": server.name,
                "access_ipv4": server.access_ipv4,
                "access_ipv6": server.access_ipv6,
            },
            metadata=dict(server.metadata),
            files=files,
        )


class Rebuild(OnItsHost):
    """Points the server at the new image and replaces the labels given; the server's flavor
    must be big enough for the image (400)."""

    action = "rebuild"

    def __init__(self, args: schema.Rebuild) -> None:
        self.request = args
        #: shown once, in the 202
        self.admin_pass = args.admin_pass or generate_password()
        self.image: Image | None = None
        #: the server as the rebuild left it (status REBUILD), for the 202
        self.server: Server | None = None
        self.spec: InstanceSpec | None = None
        self._previous: _Labels | None = None

    async def check(self, compute: ComputeAPI, ctx: RequestContext) -> None:
        if self.request.metadata or self.request.personality:
            # the project's own limits (os-quota-sets), read only when there is something to check
            limits = await quotas.project_quotas(compute.pool, compute.settings, ctx.project_id)
            quotas.check_metadata_items(limits, len(self.request.metadata or {}))
            quotas.check_personality(limits, self.request.personality)
        self.image = await compute.resolve_image(ctx, self.request.image_ref)

    async def prepare(self, locked: Locked) -> None:
        image = gathered(self.image)
        check_fits(locked.row, image)
        before = await locked.server()
        server_id = locked.row.id
        guest = await servers.guest_data(locked.conn, server_id)
        self._previous = _Labels.of(before, guest.files)
        await servers.set_image(locked.conn, server_id, image.id, progress=0)
        # the rebuilt server's drive delivers the rebuild's files (nova's injected_files)
        files = injected_files(self.request.personality)
        await servers.set_injected_files(locked.conn, server_id, files)
        changes = self.request.access_changes()
        if self.request.name is not None:
            changes["name"] = self.request.name
        if changes:
            await servers.update_fields(locked.conn, server_id, changes)
        if self.request.metadata is not None:
            await metadata_db.write(
                locked.conn,
                metadata_db.Table.SERVER,
                server_id,
                before.metadata,
                self.request.metadata,
            )
        self.server = await locked.server()
        self.spec = await instance_spec(locked.conn, self.server, image=image)

    async def command(self, to: ComputeClient, envelope: Envelope) -> None:
        await to.rebuild_server(envelope, gathered(self.spec), self.admin_pass)

    async def undo(self, conn: Conn) -> None:
        """Put the old image and labels back, unless the server moved on meanwhile."""
        server_id = gathered(self.server).id
        previous = gathered(self._previous)
        row = await servers.lock(conn, server_id, None)
        if row is None or row.task_state != TaskState.REBUILDING:
            return
        await servers.set_image(conn, server_id, previous.image_id, progress=previous.progress)
        await servers.update_fields(conn, server_id, previous.fields)
        await servers.set_injected_files(conn, server_id, previous.files)
        current = await metadata_db.read(conn, metadata_db.Table.SERVER, server_id)
        await metadata_db.write(
            conn, metadata_db.Table.SERVER, server_id, current, previous.metadata
        )
