"""Queries on ``images`` and ``image_metadata``."""

from __future__ import annotations

import uuid

import asyncpg

from shared.db.pool import Executor

_SELECT = """
SELECT i.id, i.name, i.status, i.progress, i.owner, i.user_id, i.min_disk_gb, i.min_ram_mb,
       i.disk_format, i.location, i.server_id, i.image_type, i.created_at, i.updated_at,
       i.deleted_at,
       COALESCE((SELECT jsonb_object_agg(m.key, m.value) FROM image_metadata m
                  WHERE m.image_id = i.id), '{}'::jsonb) AS metadata
  FROM images i
"""

_VISIBLE = "(i.is_public OR i.owner = $1)"


async def get(conn: Executor, image_id: uuid.UUID, project_id: str) -> asyncpg.Record | None:
    """An image ``project_id`` may see (public or its own), not deleted."""
    row: asyncpg.Record | None = await conn.fetchrow(
        f"{_SELECT} WHERE i.id = $2 AND {_VISIBLE} AND i.deleted_at IS NULL",
        project_id,
        image_id,
    )
    return row


async def list_page(
    conn: Executor,
    project_id: str,
    *,
    marker: uuid.UUID | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Visible images, newest first (the guide's order), one page after ``marker``."""
    args: list[object] = [project_id]
    where = [_VISIBLE, "i.deleted_at IS NULL"]
    if marker is not None:
        args.append(marker)
        where.append(
            f"(i.created_at, i.id) < (SELECT created_at, id FROM images WHERE id = ${len(args)})"
        )
    args.append(limit)
    rows: list[asyncpg.Record] = await conn.fetch(
        f"{_SELECT} WHERE {' AND '.join(where)}"
        f" ORDER BY i.created_at DESC, i.id DESC LIMIT ${len(args)}",
        *args,
    )
    return rows


async def is_visible(conn: Executor, image_id: uuid.UUID, project_id: str) -> bool:
    return bool(
        await conn.fetchval(
            f"SELECT 1 FROM images i WHERE i.id = $2 AND {_VISIBLE} AND i.deleted_at IS NULL",
            project_id,
            image_id,
        )
    )
