"""Queries on ``flavors``."""

from __future__ import annotations

import asyncpg

from shared.db.pool import Executor
from shared.db.records import Flavor, FlavorUsage

_COLUMNS = (
    "id, name, ram_mb, disk_gb, vcpus, swap_mb, ephemeral_gb, rxtx_factor, is_public, disabled"
)


async def get(conn: Executor, flavor_id: str) -> Flavor | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM flavors WHERE id = $1 AND deleted_at IS NULL", flavor_id
    )
    return None if row is None else Flavor.from_record(row)


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
) -> list[Flavor]:
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
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM flavors WHERE {' AND '.join(where)}"
        f" ORDER BY id LIMIT ${len(args)}",
        *args,
    )
    return [Flavor.from_record(r) for r in rows]


# --- the operator's tools (stratus flavor list|create|delete) --------------------------------


class FlavorExists(Exception):
    """A live flavor has that name, or some flavor (live or deleted) that id."""


async def list_with_usage(conn: Executor) -> list[FlavorUsage]:
    """Every live flavor in id order, with how many live servers were built from it."""
    rows = await conn.fetch(
        f"SELECT {', '.join(f'f.{c}' for c in _COLUMNS.split(', '))},"
        " (SELECT count(*) FROM servers s"
        "   WHERE s.flavor_id = f.id AND s.deleted_at IS NULL)::int AS servers"
        " FROM flavors f WHERE f.deleted_at IS NULL ORDER BY f.id"
    )
    return [FlavorUsage.from_record(r) for r in rows]


async def create(
    conn: Executor, *, flavor_id: str, name: str, ram_mb: int, disk_gb: int, vcpus: int
) -> None:
    """A new flavor. The id of a deleted flavor is never reused: servers built from it still
    name it. Raises ``FlavorExists``."""
    try:
        await conn.execute(
            "INSERT INTO flavors (id, name, ram_mb, disk_gb, vcpus) VALUES ($1, $2, $3, $4, $5)",
            flavor_id,
            name,
            ram_mb,
            disk_gb,
            vcpus,
        )
    except asyncpg.UniqueViolationError as exc:
        raise FlavorExists(str(exc)) from exc


async def find(conn: Executor, ref: str) -> Flavor | None:
    """The live flavor whose id is ``ref``, else the one of that name."""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM flavors WHERE deleted_at IS NULL AND (id = $1 OR name = $1)"
        " ORDER BY id = $1 DESC LIMIT 1",
        ref,
    )
    return None if row is None else Flavor.from_record(row)


async def mark_deleted(conn: Executor, flavor_id: str) -> bool:
    """Hide the flavor from the API (lists, shows, new servers, resizes) the way the API's
    reads expect, ``deleted_at``; its servers keep their own copy of its sizes. False when it
    is not there (or deleted already)."""
    done = await conn.execute(
        "UPDATE flavors SET deleted_at = now() WHERE id = $1 AND deleted_at IS NULL", flavor_id
    )
    return bool(done != "UPDATE 0")
