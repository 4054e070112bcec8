"""Per-project quotas set by an administrator (nova's os-quota-sets): ``quota_overrides``,
one row per (project, resource). A resource without a row has its default (the settings)."""

from __future__ import annotations

from collections.abc import Mapping

from shared.db.pool import Conn, Executor


async def for_project(conn: Executor, project_id: str) -> dict[str, int]:
    """The project's overrides, by resource (nova's quota keys)."""
    rows = await conn.fetch(
        "SELECT resource, hard_limit FROM quota_overrides WHERE project_id = $1", project_id
    )
    return {row["resource"]: row["hard_limit"] for row in rows}


async def put(conn: Conn, project_id: str, limits: Mapping[str, int]) -> None:
    """Set (insert or replace) the given resources' limits of the project."""
    await conn.executemany(
        """INSERT INTO quota_overrides (project_id, resource, hard_limit) VALUES ($1, $2, $3)
           ON CONFLICT (project_id, resource) DO UPDATE SET hard_limit = EXCLUDED.hard_limit""",
        [(project_id, resource, value) for resource, value in limits.items()],
    )


async def clear(conn: Executor, project_id: str) -> None:
    """Back to the defaults: forget every override of the project."""
    await conn.execute("DELETE FROM quota_overrides WHERE project_id = $1", project_id)
