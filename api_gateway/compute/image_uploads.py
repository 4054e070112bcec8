"""The image service API's writes (Glance v2): creating an image, uploading and downloading
its data, changing its attributes and properties.

Who may do what: a project creates private images (an administrator public ones too) and
changes its own; public images are read-only to everyone but administrators, as in the
compute API (api_gateway/compute/images.py). An upload claims a ``queued`` image (``saving``)
in one statement, so two uploads of one image cannot both win; its data goes to the image
store (shared/image_data) as it arrives, and the image only becomes ``active`` once the
store holds it whole. Any failure puts the image back to ``queued`` with nothing kept.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from api_gateway.compute import images as domain
from api_gateway.compute import quotas
from api_gateway.context import RequestContext
from api_gateway.http.faults import BadRequest, Forbidden, OverLimit
from api_gateway.schemas.common import validate
from api_gateway.schemas.image_service import ImageCore, NewImageRequest, PatchOp, property_item
from shared.config import Settings
from shared.db import image_uploads, images
from shared.db import metadata as metadata_db
from shared.db.pool import Conn
from shared.db.records import Image
from shared.errors import Conflict, NotFound
from shared.image_data import ImageData, Saved, TooLarge

#: how often an upload marks itself alive (``image_upload_stale_after_s`` is much longer)
_ALIVE_EVERY_S = 5.0

#: core attributes a patch may change, and their columns
_COLUMNS = {
    "name": "name",
    "min_disk": "min_disk_gb",
    "min_ram": "min_ram_mb",
    "protected": "protected",
    "visibility": "is_public",
    "disk_format": "disk_format",
    "container_format": "container_format",
}
#: attributes fixed once an image has data (Glance refuses to change them then)
_FIXED_WITH_DATA = frozenset({"disk_format", "container_format"})


def _unlimited(quota: int) -> bool:
    return quota < 0


async def create_image(
    pool: asyncpg.Pool, settings: Settings, ctx: RequestContext, request: NewImageRequest
) -> Image:
    """Record a ``queued`` image owned by the caller's project."""
    core = request.core
    if core.tags:
        raise BadRequest("Image tags are not supported.")
    is_public = _is_public(ctx, core.visibility)
    image_id = request.id or uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():
        limits = await quotas.project_quotas(conn, settings, ctx.project_id)
        quotas.check_metadata_items(limits, len(request.properties))
        await image_uploads.lock_project(conn, ctx.project_id)
        await _check_image_count(conn, settings, ctx.project_id)
        if await image_uploads.exists(conn, image_id):
            raise Conflict(f"Image with identifier {image_id} already exists!")
        await image_uploads.insert(
            conn,
            image_uploads.NewImage(
                id=image_id,
                name=core.name or "",
                owner=ctx.project_id,
                user_id=ctx.user_id,
                is_public=is_public,
                protected=core.protected,
                disk_format=core.disk_format,
                container_format=core.container_format,
                min_disk_gb=core.min_disk,
                min_ram_mb=core.min_ram,
                properties=request.properties,
            ),
        )
        row = await images.get(conn, image_id, ctx.project_id)
    assert row is not None  # inserted in this transaction
    return row


def _is_public(ctx: RequestContext, visibility: str) -> bool:
    """``public`` (administrators only: Glance's ``publicize_image``) or ``private``; the
    sharing Glance's ``shared`` and ``community`` need (image members) is not served."""
    if visibility in ("shared", "community"):
        raise BadRequest(f"Visibility '{visibility}' is not supported: public or private.")
    if visibility == "public" and not ctx.is_admin:
        raise Forbidden("You are not authorized to complete publicize_image action.")
    return visibility == "public"


async def _check_image_count(conn: Conn, settings: Settings, project: str) -> None:
    quota = settings.quota_images
    if _unlimited(quota):
        return
    owned = (await image_uploads.usage(conn, project)).images
    if owned + 1 > quota:
        raise OverLimit(
            f"Maximum number of images exceeded. Attempted: {owned + 1}, Maximum: {quota}"
        )


# --- patches ---------------------------------------------------------------------------------


async def patch_image(
    pool: asyncpg.Pool, settings: Settings, ctx: RequestContext, image_id: str, ops: list[PatchOp]
) -> Image:
    """Apply a JSON Patch's operations in order, all or none, under the image's row lock."""
    async with pool.acquire() as conn, conn.transaction():
        iid = await domain.locked_for_change(conn, ctx, image_id)
        row = await images.get(conn, iid, ctx.project_id)
        assert row is not None  # locked in this transaction
        current = await metadata_db.read(conn, metadata_db.Table.IMAGE, iid)
        properties = dict(current)
        changes: dict[str, object] = {}
        for op in ops:
            if op.name in _COLUMNS:
                column, value = _core_change(ctx, row, op)
                changes[column] = value
            else:
                _property_change(properties, op)
        if len(properties) > len(current):
            limits = await quotas.project_quotas(conn, settings, ctx.project_id)
            quotas.check_metadata_items(limits, len(properties))
        await image_uploads.update(conn, iid, changes)
        await metadata_db.write(conn, metadata_db.Table.IMAGE, iid, current, properties)
        updated = await images.get(conn, iid, ctx.project_id)
    assert updated is not None
    return updated


def _core_change(ctx: RequestContext, row: Image, op: PatchOp) -> tuple[str, object]:
    """(column, value) of a patch of a core attribute; core attributes cannot be removed."""
    if op.op == "remove":
        raise Forbidden(f"Properties {op.name} cannot be removed.")
    if op.name in _FIXED_WITH_DATA and row.status != "queued":
        raise Forbidden(f"Attribute {op.name} can be only replaced for a queued image.")
    value = getattr(validate(ImageCore, {op.name: op.value}), op.name)
    if op.name == "visibility":
        value = _is_public(ctx, value)
    elif op.name == "name" and value is None:
        value = ""
    return _COLUMNS[op.name], value


def _property_change(properties: dict[str, str], op: PatchOp) -> None:
    """Glance's rules: ``add`` sets, ``replace`` and ``remove`` need the property (409)."""
    if op.op != "add" and op.name not in properties:
        raise Conflict(f"Property {op.name} does not exist.")
    if op.op == "remove":
        del properties[op.name]
        return
    key, value = property_item(op.name, op.value)
    properties[key] = value


# --- data ------------------------------------------------------------------------------------


async def upload(
    pool: asyncpg.Pool,
    settings: Settings,
    store: ImageData,
    ctx: RequestContext,
    image_id: str,
    data: AsyncIterable[bytes],
    declared_size: int | None,
) -> Saved:
    """Stream ``data`` into the store as the image's data: ``saving`` while it flows,
    ``active`` once whole; ``queued`` again, with nothing kept, on any failure."""
    iid, claim = await _claim(pool, settings, ctx, image_id, declared_size)
    location = f"{iid}.{claim.disk_format}"
    try:
        alive = _marking_alive(data, lambda: image_uploads.mark_alive(pool, iid))
        saved = await store.save(location, alive, limit=claim.room)
    except TooLarge as exc:
        await image_uploads.abandon(pool, iid)
        raise OverLimit(
            f"Image size quota exceeded: the data is larger than {exc.limit} bytes."
        ) from None
    except BaseException:
        await asyncio.shield(image_uploads.abandon(pool, iid))
        raise
    if not await image_uploads.finish(pool, iid, saved):
        await store.delete(location)  # deleted while it uploaded: the data is nobody's
        raise NotFound("Image not found.")
    return saved


@dataclass(frozen=True)
class _Claim:
    disk_format: str
    #: the most bytes the upload may store (None: no limit)
    room: int | None


async def _claim(
    pool: asyncpg.Pool,
    settings: Settings,
    ctx: RequestContext,
    image_id: str,
    declared_size: int | None,
) -> tuple[uuid.UUID, _Claim]:
    """Take a ``queued`` image the caller may change for an upload (``saving``)."""
    async with pool.acquire() as conn, conn.transaction():
        iid = await domain.locked_for_change(conn, ctx, image_id)
        upload = await image_uploads.start(conn, iid)
        if upload is None:
            status = await conn.fetchval("SELECT status FROM images WHERE id = $1", iid)
            raise Conflict(f"Image status transition from {status} to saving is not allowed")
        if upload.disk_format is None or upload.container_format is None:
            raise BadRequest(
                "Properties disk_format, container_format must be set prior to saving data."
            )
        room = await _room(conn, settings, upload.owner or ctx.project_id)
        if room is not None and declared_size is not None and declared_size > room:
            raise OverLimit(f"Image size quota exceeded: {declared_size} bytes asked, {room} left.")
    return iid, _Claim(upload.disk_format, room)


async def _room(conn: Conn, settings: Settings, project: str) -> int | None:
    quota = settings.quota_image_bytes
    if _unlimited(quota):
        return None
    return max(0, quota - (await image_uploads.usage(conn, project)).bytes)


async def _marking_alive(
    data: AsyncIterable[bytes], mark: Callable[[], Awaitable[None]]
) -> AsyncIterator[bytes]:
    """``data`` as it comes, marking the upload alive every few seconds meanwhile."""
    last = time.monotonic()
    async for chunk in data:
        if time.monotonic() - last > _ALIVE_EVERY_S:
            await mark()
            last = time.monotonic()
        yield chunk


@dataclass(frozen=True)
class Download:
    """An image's data to send: where it is and what it is."""

    location: str
    size: int
    checksum: str | None


async def download(
    pool: asyncpg.Pool, store: ImageData, ctx: RequestContext, image_id: str
) -> Download | None:
    """The data of an image the caller may see; None when it has none (yet)."""
    return await _data(pool, store, await domain.get_image(pool, ctx, image_id))


async def download_for_host(
    pool: asyncpg.Pool, store: ImageData, image_id: uuid.UUID
) -> Download | None:
    """The data of any live image, whoever owns it: a host building a server from it asks
    with a signed URL (shared/image_urls.py), having been told of the image by a command."""
    row = await images.get_any(pool, image_id)
    if row is None or row.deleted_at is not None:
        raise NotFound("Image not found.")
    return await _data(pool, store, row)


async def store_for_host(
    pool: asyncpg.Pool, store: ImageData, image_id: uuid.UUID, data: AsyncIterable[bytes]
) -> Saved:
    """Store the data of an image a host is saving (createImage, createBackup: ``saving``
    with no data yet); 409 for any other image. The image's row is left to the host's
    report (conductor/snapshots.py), which makes it active with what this returns."""
    row = await images.get_any(pool, image_id)
    if row is None or row.deleted_at is not None:
        raise NotFound("Image not found.")
    if row.server_id is None or row.status != "saving" or row.location is not None:
        raise Conflict(f"Image {image_id} is not being saved by a host.")
    return await store.save(f"{image_id}.{row.disk_format}", data)


async def _data(pool: asyncpg.Pool, store: ImageData, row: Image) -> Download | None:
    if row.status != "active" or row.location is None:
        return None
    size = await store.size(row.location)
    if size is None:
        return None
    sharing = (await images.sharing(pool, [row.id]))[row.id]
    return Download(row.location, size, sharing.checksum)
