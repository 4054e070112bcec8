"""Queries of images users create and upload through the image service API (Glance v2).

An image is created ``queued`` with no data; an upload takes it to ``saving`` (one at a
time: the status change is the claim), then ``active`` with its data's location, size and
hashes, or back to ``queued`` when the upload failed. While an upload streams, its gateway
marks it alive (``upload_seen_at``); an upload whose gateway died is found by that mark
going stale and put back to ``queued`` (``reset_stale``), so no image stays ``saving``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from shared.db import locks
from shared.db.pool import Conn, Executor
from shared.image_data import Saved

#: the advisory lock class of a project's image quota (shared/db/locks.py)
_IMAGE_QUOTA_LOCK_CLASS = 0x1A6E


async def lock_project(conn: Conn, project_id: str) -> None:
    """Hold the project's image quota lock: creates are counted one after the other."""
    await locks.hold(conn, _IMAGE_QUOTA_LOCK_CLASS, project_id, what="a project's image lock")


@dataclass(frozen=True)
class NewImage:
    """An image as a create request describes it, before any data."""

    id: uuid.UUID
    name: str
    owner: str
    user_id: str
    is_public: bool
    protected: bool
    disk_format: str | None
    container_format: str | None
    min_disk_gb: int
    min_ram_mb: int
    properties: Mapping[str, str]


async def exists(conn: Executor, image_id: uuid.UUID) -> bool:
    """Any image (deleted ones too) has this id: ids are never reused."""
    return bool(await conn.fetchval("SELECT 1 FROM images WHERE id = $1", image_id))


async def insert(conn: Conn, image: NewImage) -> None:
    """Record a ``queued`` image and its properties."""
    await conn.execute(
        """INSERT INTO images (id, name, status, progress, owner, user_id, is_public, protected,
                               disk_format, container_format, min_disk_gb, min_ram_mb,
                               image_type)
           VALUES ($1, $2, 'queued', 0, $3, $4, $5, $6, $7, $8, $9, $10, 'base')""",
        image.id,
        image.name,
        image.owner,
        image.user_id,
        image.is_public,
        image.protected,
        image.disk_format,
        image.container_format,
        image.min_disk_gb,
        image.min_ram_mb,
    )
    if image.properties:
        await conn.executemany(
            "INSERT INTO image_metadata (image_id, key, value) VALUES ($1, $2, $3)",
            [(image.id, key, value) for key, value in image.properties.items()],
        )


@dataclass(frozen=True)
class Usage:
    """A project's images (not deleted) and the bytes of their data."""

    images: int
    bytes: int


async def usage(conn: Executor, project_id: str) -> Usage:
    row = await conn.fetchrow(
        """SELECT count(*) AS images, COALESCE(sum(size_bytes), 0)::bigint AS bytes
             FROM images WHERE owner = $1 AND deleted_at IS NULL""",
        project_id,
    )
    assert row is not None
    return Usage(row["images"], row["bytes"])


@dataclass(frozen=True)
class Upload:
    """An image whose data is being uploaded: what the store needs to name it."""

    id: uuid.UUID
    disk_format: str | None
    container_format: str | None
    owner: str | None


async def start(conn: Executor, image_id: uuid.UUID) -> Upload | None:
    """Claim a ``queued`` image for an upload (``saving``); None when it is not queued."""
    row = await conn.fetchrow(
        """UPDATE images SET status = 'saving', upload_seen_at = now()
            WHERE id = $1 AND status = 'queued' AND deleted_at IS NULL
        RETURNING id, disk_format, container_format, owner""",
        image_id,
    )
    return None if row is None else Upload(**dict(row))


async def mark_alive(conn: Executor, image_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE images SET upload_seen_at = now() WHERE id = $1 AND status = 'saving'", image_id
    )


async def finish(conn: Executor, image_id: uuid.UUID, saved: Saved) -> bool:
    """The upload is complete: ``active`` with its data. False when the image was deleted
    (or reset) meanwhile: then the data belongs to nobody."""
    status = await conn.execute(
        """UPDATE images SET status = 'active', progress = 100, location = $2, size_bytes = $3,
                             checksum = $4, os_hash_algo = $5, os_hash_value = $6,
                             upload_seen_at = NULL
            WHERE id = $1 AND status = 'saving' AND deleted_at IS NULL""",
        image_id,
        saved.location,
        saved.size,
        saved.checksum,
        saved.os_hash_algo,
        saved.os_hash_value,
    )
    return bool(status != "UPDATE 0")


async def abandon(conn: Executor, image_id: uuid.UUID) -> None:
    """The upload failed: ``queued`` again, with no data, ready for another try."""
    await conn.execute(
        """UPDATE images SET status = 'queued', upload_seen_at = NULL
            WHERE id = $1 AND status = 'saving'""",
        image_id,
    )


async def reset_stale(conn: Executor, older_than_s: float) -> list[uuid.UUID]:
    """Put back to ``queued`` the uploads whose gateway has not marked them alive for
    ``older_than_s`` seconds (it died mid-upload). Returns their ids."""
    rows = await conn.fetch(
        """UPDATE images SET status = 'queued', upload_seen_at = NULL
            WHERE status = 'saving' AND upload_seen_at < now() - make_interval(secs => $1)
        RETURNING id""",
        older_than_s,
    )
    return [row["id"] for row in rows]


async def update(conn: Executor, image_id: uuid.UUID, changes: Mapping[str, object]) -> None:
    """Change core attributes of an image (``changes``: column -> value; the columns are
    the caller's, never a client's text)."""
    if not changes:
        return
    columns = list(changes)
    assignments = ", ".join(f"{column} = ${n}" for n, column in enumerate(columns, start=2))
    await conn.execute(
        f"UPDATE images SET {assignments} WHERE id = $1", image_id, *changes.values()
    )


@dataclass(frozen=True)
class Orphan:
    """The data of a deleted image that no live server was built from."""

    id: uuid.UUID
    location: str


async def orphaned_data(conn: Executor, limit: int = 100) -> list[Orphan]:
    """Deleted images (by a user, or rotated out of a server's backups) that still have data
    in the store and no live server built from them: a server's disk may read its image's
    file in place (agents without an image API), so data goes only once nothing may."""
    rows = await conn.fetch(
        """SELECT i.id, i.location FROM images i
            WHERE i.deleted_at IS NOT NULL AND i.location IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM servers s
                               WHERE s.image_id = i.id AND s.deleted_at IS NULL)
            LIMIT $1""",
        limit,
    )
    return [Orphan(r["id"], r["location"]) for r in rows]


async def forget_data(conn: Executor, orphan: Orphan) -> bool:
    """The deleted image no longer has data (its file is being removed); False when another
    gateway took it first."""
    status = await conn.execute(
        "UPDATE images SET location = NULL WHERE id = $1 AND location = $2",
        orphan.id,
        orphan.location,
    )
    return bool(status != "UPDATE 0")
