"""Queries on ``flavors``."""

from __future__ import annotations

import asyncpg

from shared.db.pool import Executor

_COLUMNS = "id, name, ram_mb, disk_gb, vcpus"


async def get(conn: Executor, flavor_id: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM flavors WHERE id = $1 AND deleted_at IS NULL", flavor_id
    )
    return row


async def exists(conn: Executor, flavor_id: str) -> bool:
    return bool(
        await conn.fetchval("SELECT 1 FROM flavors WHERE id = $1 AND deleted_at IS NULL", flavor_id)
    )


async def list_page(
    conn: Executor,
    *,
    min_ram_mb: int | None = None,
    min_disk_gb: int | None = None,
    marker: str | None = None,
    limit: int,
) -> list[asyncpg.Record]:
    """Flavors in id order (as the reference implementation sorted them), one page."""
    where = ["deleted_at IS NULL"]
    args: list[object] = []
    if min_ram_mb is not None:
        args.append(min_ram_mb)
        where.append(f"ram_mb >= ${len(args)}")
    if min_disk_gb is not None:
        args.append(min_disk_gb)
        where.append(f"disk_gb >= ${len(args)}")
    if marker is not None:
        args.append(marker)
        where.append(f"id > ${len(args)}")
    args.append(limit)
    rows: list[asyncpg.Record] = await conn.fetch(
        f"SELECT {_COLUMNS} FROM flavors WHERE {' AND '.join(where)}"
        f" ORDER BY id LIMIT ${len(args)}",
        *args,
    )
    return rows
