"""Deleted images' data leaves the image store: the gateways, which own the store, remove the
file of every deleted image (deleted by its owner, or rotated out of a server's backups) once
no live server was built from it, since a server's disk may read its image's file in place.

Every gateway looks every ``interval_s``; a file is claimed in the database before it is
removed (its row forgets the location), so two gateways never race for one and a crash
between the two leaves a file no row names, which the store's owner may remove by hand.
"""

from __future__ import annotations

import logging

import asyncpg

from shared.db import image_uploads
from shared.image_data import ImageData

log = logging.getLogger(__name__)


async def purge_deleted_image_data(pool: asyncpg.Pool, store: ImageData) -> list[str]:
    """Remove the data of deleted images nothing uses; the locations removed."""
    removed = []
    for orphan in await image_uploads.orphaned_data(pool):
        if await image_uploads.forget_data(pool, orphan):
            await store.delete(orphan.location)
            removed.append(orphan.location)
    if removed:
        log.info("removed the data of %d deleted images: %s", len(removed), removed)
    return removed
