"""Queries on ``images`` and ``image_metadata``.

Deleting an image is a soft delete (status ``deleted``, ``deleted_at`` set), so a list with
``changes-since`` still shows it as DELETED. ``updated_at`` follows every change of the row
and of its metadata (a trigger), which is what ``changes-since`` compares with.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from shared.db.pool import Conn, Executor
from shared.db.records import Image, ImageSharing, LockedImage, StoredImage
from shared.db.sql import Params, Where
from shared.messages import Fault

_SELECT = """
SELECT i.id, i.name, i.status, i.progress, i.owner, i.user_id, i.min_disk_gb, i.min_ram_mb,
       i.disk_format, i.location, i.server_id, i.image_type, i.created_at, i.updated_at,
       i.deleted_at,
       COALESCE((SELECT jsonb_object_agg(m.key, m.value) FROM image_metadata m
                  WHERE m.image_id = i.id), '{}'::jsonb) AS metadata,
       CASE WHEN i.fault_code IS NOT NULL THEN
           jsonb_build_object('code', i.fault_code, 'message', i.fault_message,
                              'details', i.fault_details,
                              'created', to_char(i.fault_created_at AT TIME ZONE 'UTC',
                                                 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
       END AS fault,
       i.checksum
  FROM images i
"""

_VISIBLE = "(i.is_public OR i.owner = $1)"

#: A live image project $1 may see (public or its own), of id $2: ``get``, and the image of a
#: server create (shared/db/creates.py).
GET = f"{_SELECT} WHERE i.id = $2 AND {_VISIBLE} AND i.deleted_at IS NULL"


async def get(conn: Executor, image_id: uuid.UUID, project_id: str) -> Image | None:
    """An image ``project_id`` may see (public or its own), not deleted."""
    row = await conn.fetchrow(GET, project_id, image_id)
    return None if row is None else Image.from_record(row)


@dataclass(frozen=True)
class ImageFilters:
    """What an image list is narrowed to (guide 2.5.1); None means "not filtered on"."""

    server_id: uuid.UUID | None = None
    name: str | None = None
    #: image-service statuses (``active``, ``saving``...) the image must have, or must not
    status_in: frozenset[str] | None = None
    status_not_in: frozenset[str] | None = None
    #: True: base images only; False: images made from servers (snapshots, backups) only
    base: bool | None = None
    #: an exact ``image_type`` (``snapshot``, ``backup``), as the reference implementation
    image_type: str | None = None
    min_disk_gb: int | None = None
    min_ram_mb: int | None = None
    #: only images changed at or after this instant, deleted ones included (guide 1.5)
    changes_since: datetime | None = None

    def predicates(self, params: Params) -> list[str]:
        """SQL conditions on ``images i`` (visibility to the project comes first)."""
        where = Where(params, "i", self.changes_since)
        where.compare("server_id", "=", self.server_id)
        where.compare("name", "=", self.name)
        where.among("status", self.status_in)
        where.among("status", self.status_not_in, negate=True)
        if self.base is not None:
            where.conditions.append(
                "i.image_type = 'base'" if self.base else "i.image_type <> 'base'"
            )
        where.compare("image_type", "=", self.image_type)
        where.compare("min_disk_gb", ">=", self.min_disk_gb)
        where.compare("min_ram_mb", ">=", self.min_ram_mb)
        return where.conditions


async def list_page(
    conn: Executor,
    project_id: str,
    *,
    marker: uuid.UUID | None,
    limit: int,
    filters: ImageFilters | None = None,
) -> list[Image]:
    """Visible images matching ``filters``, newest first (the guide's order), one page after
    ``marker``. Deleted images only with ``changes_since``."""
    params = Params(project_id)
    where = [_VISIBLE, *(filters or ImageFilters()).predicates(params)]
    if marker is not None:
        where.append(
            "(i.created_at, i.id) < (SELECT created_at, id FROM images"
            f" WHERE id = {params.add(marker)})"
        )
    rows = await conn.fetch(
        f"{_SELECT} WHERE {' AND '.join(where)}"
        f" ORDER BY i.created_at DESC, i.id DESC LIMIT {params.add(limit)}",
        *params.values,
    )
    return [Image.from_record(r) for r in rows]


async def is_visible(conn: Executor, image_id: uuid.UUID, project_id: str) -> bool:
    return bool(
        await conn.fetchval(
            f"SELECT 1 FROM images i WHERE i.id = $2 AND {_VISIBLE} AND i.deleted_at IS NULL",
            project_id,
            image_id,
        )
    )


async def was_visible(conn: Executor, image_id: uuid.UUID, project_id: str) -> bool:
    """Visible to the project, deleted or not (a marker of a changes-since page may name a
    deleted image)."""
    return bool(
        await conn.fetchval(
            f"SELECT 1 FROM images i WHERE i.id = $2 AND {_VISIBLE}", project_id, image_id
        )
    )


async def lock(conn: Conn, image_id: uuid.UUID, project_id: str) -> LockedImage | None:
    """A live image the project may see, locked until the transaction ends, with what
    deciding who may change it needs."""
    row = await conn.fetchrow(
        f"""SELECT i.id, i.owner, i.is_public, i.status, i.protected FROM images i
             WHERE i.id = $2 AND {_VISIBLE} AND i.deleted_at IS NULL
               FOR UPDATE""",
        project_id,
        image_id,
    )
    return None if row is None else LockedImage.from_record(row)


async def mark_deleted(conn: Executor, image_id: uuid.UUID) -> bool:
    """Soft-delete the image (it stays visible to changes-since as DELETED)."""
    status = await conn.execute(
        """UPDATE images SET status = 'deleted', deleted_at = now()
            WHERE id = $1 AND deleted_at IS NULL""",
        image_id,
    )
    return bool(status != "UPDATE 0")


async def set_fault(conn: Executor, image_id: uuid.UUID, fault: Fault) -> bool:
    """Put an image whose creation failed in ERROR (``killed``) with ``fault``, which its
    representation then shows (Ex 1.50/1.51); False when the image is gone."""
    status = await conn.execute(
        """UPDATE images SET status = 'killed', fault_code = $2, fault_message = $3,
                             fault_details = $4, fault_created_at = now()
            WHERE id = $1 AND deleted_at IS NULL""",
        image_id,
        fault.code,
        fault.message,
        fault.details,
    )
    return bool(status != "UPDATE 0")


# --- snapshots of servers (createImage) ----------------------------------------------------


@dataclass(frozen=True)
class NewSnapshot:
    """An image about to be made from a server (``image_type`` snapshot, private to its
    project)."""

    id: uuid.UUID
    name: str
    owner: str
    user_id: str
    server_id: uuid.UUID
    min_disk_gb: int
    min_ram_mb: int
    disk_format: str
    metadata: dict[str, str]


@dataclass(frozen=True)
class Backup:
    """What makes a snapshot a backup (createBackup): its type and how many of that type
    the server keeps."""

    backup_type: str
    rotation: int


async def insert_snapshot(conn: Executor, image: NewSnapshot, backup: Backup | None = None) -> None:
    """Record the image as being saved (SAVING) until its server's host has written it; a
    ``backup`` is recorded with ``image_type`` backup."""
    await conn.execute(
        """INSERT INTO images (id, name, status, progress, owner, user_id, is_public,
                               min_disk_gb, min_ram_mb, disk_format, server_id, image_type,
                               backup_type, backup_rotation)
           VALUES ($1, $2, 'saving', 0, $3, $4, false, $5, $6, $7, $8, $9, $10, $11)""",
        image.id,
        image.name,
        image.owner,
        image.user_id,
        image.min_disk_gb,
        image.min_ram_mb,
        image.disk_format,
        image.server_id,
        "snapshot" if backup is None else "backup",
        backup.backup_type if backup is not None else None,
        backup.rotation if backup is not None else None,
    )
    if image.metadata:
        await conn.executemany(
            "INSERT INTO image_metadata (image_id, key, value) VALUES ($1, $2, $3)",
            [(image.id, k, v) for k, v in image.metadata.items()],
        )


async def finish_snapshot(
    conn: Executor,
    image_id: uuid.UUID,
    *,
    location: str,
    size_bytes: int,
    checksum: str | None = None,
    os_hash_value: str | None = None,
) -> bool:
    """The image file is written: the image is ACTIVE (with its MD5 and SHA-512 where the
    image service computed them). False unless it was still saving."""
    status = await conn.execute(
        """UPDATE images SET status = 'active', progress = 100, location = $2, size_bytes = $3,
                             checksum = $4, os_hash_value = $5,
                             os_hash_algo = CASE WHEN $5::text IS NULL THEN NULL
                                                 ELSE 'sha512' END
            WHERE id = $1 AND status = 'saving' AND deleted_at IS NULL""",
        image_id,
        location,
        size_bytes,
        checksum,
        os_hash_value,
    )
    return bool(status != "UPDATE 0")


async def discard_snapshot(conn: Executor, image_id: uuid.UUID) -> None:
    """Forget an image whose snapshot was never asked for (its command could not be queued);
    the client was told so and never saw its id."""
    await conn.execute(
        "DELETE FROM images WHERE id = $1 AND status = 'saving' AND location IS NULL", image_id
    )


async def get_any(conn: Executor, image_id: uuid.UUID) -> Image | None:
    """An image whatever its owner or state: the one a server was built from, which may have
    been deleted or made private since."""
    row = await conn.fetchrow(f"{_SELECT} WHERE i.id = $1", image_id)
    return None if row is None else Image.from_record(row)


# --- backups (createBackup) and abandoned snapshots -----------------------------------------


async def rotate_backups(conn: Executor, backup_id: uuid.UUID) -> list[uuid.UUID]:
    """After the backup ``backup_id`` is saved: of its server's active backups of the same
    type, keep the newest ``rotation`` (the backup's own) and delete the others, the oldest
    ones; returns their ids. A rotation of 0 keeps none, this one included (nova's rule)."""
    rows = await conn.fetch(
        """WITH made AS (
               SELECT server_id, backup_type, backup_rotation FROM images
                WHERE id = $1 AND image_type = 'backup' AND backup_rotation IS NOT NULL),
                excess AS (
               SELECT i.id FROM images i, made m
                WHERE i.image_type = 'backup' AND i.server_id = m.server_id
                  AND i.backup_type = m.backup_type AND i.status = 'active'
                  AND i.deleted_at IS NULL
                ORDER BY i.created_at DESC, i.id DESC
               OFFSET (SELECT backup_rotation FROM made))
           UPDATE images SET status = 'deleted', deleted_at = now()
            WHERE id IN (SELECT id FROM excess)
        RETURNING id""",
        backup_id,
    )
    return [r["id"] for r in rows]


async def kill_saving(conn: Executor, server_id: uuid.UUID, fault: Fault) -> list[uuid.UUID]:
    """Put the images of ``server_id`` still being saved in ERROR with ``fault``: their
    snapshot was abandoned and no report will finish them. Returns their ids."""
    rows = await conn.fetch(
        """UPDATE images SET status = 'killed', fault_code = $2, fault_message = $3,
                             fault_details = $4, fault_created_at = now()
            WHERE server_id = $1 AND status IN ('queued', 'saving') AND deleted_at IS NULL
        RETURNING id""",
        server_id,
        fault.code,
        fault.message,
        fault.details,
    )
    return [r["id"] for r in rows]


async def sharing(conn: Executor, image_ids: list[uuid.UUID]) -> dict[uuid.UUID, ImageSharing]:
    """``is_public`` and ``size_bytes`` of images, by id (the image service API shows them;
    the compute API does not)."""
    rows = await conn.fetch(
        """SELECT id, is_public, size_bytes, container_format, protected, checksum, os_hash_algo,
                  os_hash_value
             FROM images WHERE id = ANY($1::uuid[])""",
        image_ids,
    )
    return {row["id"]: ImageSharing.from_record(row) for row in rows}


#: the metadata keys that say how an image boots (compute_agent/virt/libvirt/images.py)
BOOT_KEYS = ("kernel", "initrd", "cmdline")


async def inherit_boot_metadata(conn: Executor, image_id: uuid.UUID, server_id: uuid.UUID) -> None:
    """Give the image made of ``server_id`` the boot keys of the server's image (a server
    booted from a kernel of its image's boots the same way from an image of it), unless the
    new image sets them itself."""
    await conn.execute(
        """INSERT INTO image_metadata (image_id, key, value)
           SELECT $1, m.key, m.value FROM image_metadata m
             JOIN servers s ON s.image_id = m.image_id
            WHERE s.id = $2 AND m.key = ANY($3::text[])
           ON CONFLICT (image_id, key) DO NOTHING""",
        image_id,
        server_id,
        list(BOOT_KEYS),
    )


# --- base images, imported from files by the operator (stratus image import) ----------------


@dataclass(frozen=True)
class NewBaseImage:
    """A base image whose file is in the image store already, at ``location``: public, or
    private to ``owner``."""

    id: uuid.UUID
    name: str
    owner: str | None
    min_disk_gb: int
    min_ram_mb: int
    disk_format: str
    location: str
    size_bytes: int
    metadata: dict[str, str]
    #: MD5 and SHA-512 of the file, as an upload through the image API records them
    checksum: str | None = None
    os_hash_value: str | None = None


async def get_live(conn: Executor, image_id: uuid.UUID) -> StoredImage | None:
    """The name, location and size_bytes of an image that is not deleted, whoever owns it."""
    row = await conn.fetchrow(
        "SELECT name, location, size_bytes FROM images WHERE id = $1 AND deleted_at IS NULL",
        image_id,
    )
    return None if row is None else StoredImage.from_record(row)


async def insert_base(conn: Conn, image: NewBaseImage) -> None:
    """Record an ACTIVE base image and its metadata, both or neither."""
    async with conn.transaction():
        await conn.execute(
            """INSERT INTO images (id, name, status, progress, owner, is_public, min_disk_gb,
                                   min_ram_mb, disk_format, location, size_bytes, image_type,
                                   checksum, os_hash_algo, os_hash_value)
               VALUES ($1, $2, 'active', 100, $3, $4, $5, $6, $7, $8, $9, 'base', $10,
                       CASE WHEN $11::text IS NULL THEN NULL ELSE 'sha512' END, $11)""",
            image.id,
            image.name,
            image.owner,
            image.owner is None,
            image.min_disk_gb,
            image.min_ram_mb,
            image.disk_format,
            image.location,
            image.size_bytes,
            image.checksum,
            image.os_hash_value,
        )
        await conn.executemany(
            "INSERT INTO image_metadata (image_id, key, value) VALUES ($1, $2, $3)",
            [(image.id, key, value) for key, value in image.metadata.items()],
        )
