"""createImage (guide 2.3.7) and createBackup (guide 3.1): a new image, saved by the server's
host, while the server keeps its status.

The image is recorded at once (SAVING, owned by the server's project, made from this
server), so the 202 can point at it; its minimum disk and RAM are the base image's, as the
reference implementation set them. A backup is a snapshot that the conductor rotates once it
is saved: it deletes the server's oldest backups of that type beyond ``rotation``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING

from api_gateway.compute import quotas
from api_gateway.compute.actions.plan import Locked, OnItsHost
from api_gateway.context import RequestContext
from api_gateway.schemas import admin_actions as admin_schema
from api_gateway.schemas import server_actions as schema
from shared.db import images
from shared.db.pool import Conn
from shared.rpcapi import ComputeClient, Envelope

if TYPE_CHECKING:
    from api_gateway.compute.api import ComputeAPI


class _Snapshot(OnItsHost):
    """Records the new image; with ``backup`` it is a backup, else a snapshot."""

    def __init__(
        self, name: str, metadata: Mapping[str, str], backup: images.Backup | None = None
    ) -> None:
        self.name = name
        self.metadata = dict(metadata)
        self.backup = backup
        self.image_id = uuid.uuid4()
        self.disk_format = "qcow2"

    async def check(self, compute: ComputeAPI, ctx: RequestContext) -> None:
        if self.metadata:  # against the project's own limit (os-quota-sets), when there is any
            limits = await quotas.project_quotas(compute.pool, compute.settings, ctx.project_id)
            quotas.check_metadata_items(limits, len(self.metadata))

    async def prepare(self, locked: Locked) -> None:
        row = locked.row
        base = await images.get_any(locked.conn, (await locked.server()).image_id)
        if base is not None and base.disk_format is not None:
            self.disk_format = base.disk_format
        await images.insert_snapshot(
            locked.conn,
            images.NewSnapshot(
                id=self.image_id,
                name=self.name,
                owner=row.tenant_id,
                user_id=locked.ctx.user_id,
                server_id=row.id,
                min_disk_gb=base.min_disk_gb if base is not None else 0,
                min_ram_mb=base.min_ram_mb if base is not None else 0,
                disk_format=self.disk_format,
                metadata=self.metadata,
            ),
            self.backup,
        )

    async def undo(self, conn: Conn) -> None:
        await images.discard_snapshot(conn, self.image_id)


class CreateImage(_Snapshot):
    """A snapshot (SAVING -> ACTIVE) of the server."""

    action = "createImage"

    def __init__(self, args: schema.CreateImage) -> None:
        super().__init__(args.name, args.metadata)

    async def command(self, to: ComputeClient, envelope: Envelope) -> None:
        await to.snapshot_server(envelope, self.image_id, self.disk_format)


class CreateBackup(_Snapshot):
    """A backup image (SAVING -> ACTIVE) of the server, of ``backup_type``."""

    action = "createBackup"

    def __init__(self, args: admin_schema.CreateBackup) -> None:
        super().__init__(args.name, args.metadata, images.Backup(args.backup_type, args.rotation))
        #: how many backups of this type the server keeps (0: this one is deleted once saved)
        self.rotation = args.rotation

    async def command(self, to: ComputeClient, envelope: Envelope) -> None:
        await to.backup_server(envelope, self.image_id, self.disk_format)
