"""The gateway's domain layer for images: listing, deleting, and who may change what.

A project sees the public images and its own. It may delete its own images and change their
metadata; the public base images the provider supplies are read-only for everyone but
administrators (403). Writes lock the image's row, so a delete and a metadata change (or two
metadata changes) are decided one after the other.
"""

from __future__ import annotations

import uuid

import asyncpg

from api_gateway.compute.metadata import MetadataEdit, edited_for
from api_gateway.context import RequestContext
from shared.config import Settings
from shared.db import images
from shared.db import metadata as metadata_db
from shared.db.images import ImageFilters
from shared.db.pool import Conn, Executor
from shared.db.records import Image, LockedImage
from shared.errors import Invalid, NotFound, NotPermitted

_NOT_FOUND = "Image not found."


def _image_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(_NOT_FOUND) from None


async def list_images(
    pool: asyncpg.Pool,
    ctx: RequestContext,
    *,
    limit: int,
    marker: str | None,
    filters: ImageFilters | None,
) -> list[Image]:
    """One page of the images the project sees, matching ``filters`` (None: nothing can
    match). With ``changes-since`` a page may end on a deleted image, so a marker may name
    one."""
    marker_id = None
    if marker is not None:
        try:
            marker_id = uuid.UUID(marker)
        except ValueError:
            raise Invalid(f"marker [{marker}] not found") from None
        if not await images.was_visible(pool, marker_id, ctx.project_id):
            raise Invalid(f"marker [{marker}] not found")
    if filters is None:
        return []
    return await images.list_page(
        pool, ctx.project_id, marker=marker_id, limit=limit, filters=filters
    )


async def get_image(conn: Executor, ctx: RequestContext, image_id: str) -> Image:
    row = await images.get(conn, _image_id(image_id), ctx.project_id)
    if row is None:
        raise NotFound(_NOT_FOUND)
    return row


async def locked_for_change(conn: Conn, ctx: RequestContext, image_id: str) -> uuid.UUID:
    """Lock an image the caller may change: 404 if the project cannot see it, 403 if it may
    see but not change it (another's public image, the provider's base images)."""
    return (await _locked(conn, ctx, image_id)).id


async def _locked(conn: Conn, ctx: RequestContext, image_id: str) -> LockedImage:
    iid = _image_id(image_id)
    row = await images.lock(conn, iid, ctx.project_id)
    if row is None:
        raise NotFound(_NOT_FOUND)
    if not ctx.is_admin and row.owner != ctx.project_id:
        raise NotPermitted(f"Image {iid} is not owned by this project; it cannot be changed.")
    return row


async def delete_image(pool: asyncpg.Pool, ctx: RequestContext, image_id: str) -> None:
    """Soft-delete the image (status DELETED, still listed by changes-since); a protected
    one is 403 until its ``protected`` is cleared (Glance's rule)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await _locked(conn, ctx, image_id)
        if row.protected:
            raise NotPermitted(f"Image {row.id} is protected and cannot be deleted.")
        await images.mark_deleted(conn, row.id)


async def image_metadata(pool: asyncpg.Pool, ctx: RequestContext, image_id: str) -> dict[str, str]:
    async with pool.acquire() as conn, conn.transaction(readonly=True):
        row = await get_image(conn, ctx, image_id)
        return await metadata_db.read(conn, metadata_db.Table.IMAGE, row.id)


async def edit_image_metadata(
    pool: asyncpg.Pool,
    settings: Settings,
    ctx: RequestContext,
    image_id: str,
    edit: MetadataEdit,
) -> dict[str, str]:
    """Apply ``edit`` to the image's metadata under its row lock; returns the new set."""
    async with pool.acquire() as conn, conn.transaction():
        iid = await locked_for_change(conn, ctx, image_id)
        current = await metadata_db.read(conn, metadata_db.Table.IMAGE, iid)
        new = await edited_for(conn, settings, ctx.project_id, edit, current)
        await metadata_db.write(conn, metadata_db.Table.IMAGE, iid, current, new)
    return new
