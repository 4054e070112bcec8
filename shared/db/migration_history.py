"""Reads of ``migrations`` for the os-migrations extension: every resize, cold migration and
live migration, newest first, as administrators list them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from shared.db.pool import Executor
from shared.db.records import MigrationEntry
from shared.db.sql import Params


@dataclass(frozen=True)
class MigrationFilters:
    """None means "not filtered on"."""

    #: the source or the destination host
    host: str | None = None
    status: str | None = None
    server_id: uuid.UUID | None = None
    #: ``resize`` (another flavor), ``migration`` (same flavor) or ``live-migration``
    migration_type: str | None = None

    def predicates(self, params: Params) -> list[str]:
        where = []
        if self.host is not None:
            host = params.add(self.host)
            where.append(f"(source_host = {host} OR dest_host = {host})")
        if self.status is not None:
            where.append(f"status = {params.add(self.status)}")
        if self.server_id is not None:
            where.append(f"server_id = {params.add(self.server_id)}")
        if self.migration_type == "live-migration":
            where.append("kind = 'live-migration'")
        elif self.migration_type == "migration":
            where.append("kind = 'resize' AND old_flavor_id = new_flavor_id")
        elif self.migration_type == "resize":
            where.append("kind = 'resize' AND old_flavor_id <> new_flavor_id")
        return where


async def list_recent(
    conn: Executor, filters: MigrationFilters, *, limit: int
) -> list[MigrationEntry]:
    params = Params()
    where = filters.predicates(params) or ["true"]
    rows = await conn.fetch(
        "SELECT number, server_id, source_host, dest_host, old_flavor_id, new_flavor_id,"
        " status, kind, created_at, updated_at FROM migrations"
        f" WHERE {' AND '.join(where)}"
        f" ORDER BY created_at DESC, number DESC LIMIT {params.add(limit)}",
        *params.values,
    )
    return [MigrationEntry.from_record(r) for r in rows]
