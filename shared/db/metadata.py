"""Queries on the two metadata tables, ``server_metadata`` and ``image_metadata``.

Both hold (owner id, key, value) rows and change the same way: the caller works out the whole
new set (api_gateway/metadata.py) and ``write`` turns the difference into row changes, so an
unchanged item is not rewritten (and does not bump its server's version).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from enum import Enum

from shared.db.pool import Executor


class Table(Enum):
    """A metadata table and the column naming its owner."""

    SERVER = ("server_metadata", "server_id")
    IMAGE = ("image_metadata", "image_id")

    @property
    def table(self) -> str:
        return self.value[0]

    @property
    def owner(self) -> str:
        return self.value[1]


async def read(conn: Executor, table: Table, owner_id: uuid.UUID) -> dict[str, str]:
    rows = await conn.fetch(
        f"SELECT key, value FROM {table.table} WHERE {table.owner} = $1 ORDER BY key", owner_id
    )
    return {r["key"]: r["value"] for r in rows}


async def write(
    conn: Executor,
    table: Table,
    owner_id: uuid.UUID,
    current: Mapping[str, str],
    new: Mapping[str, str],
) -> None:
    """Make the owner's metadata ``new``, given that it is ``current`` now (read under the
    owner's row lock, so nobody changed it in between)."""
    gone = [key for key in current if key not in new]
    changed = [(owner_id, k, v) for k, v in new.items() if current.get(k) != v]
    if gone:
        await conn.execute(
            f"DELETE FROM {table.table} WHERE {table.owner} = $1 AND key = ANY($2::text[])",
            owner_id,
            gone,
        )
    if changed:
        await conn.executemany(
            f"""INSERT INTO {table.table} ({table.owner}, key, value) VALUES ($1, $2, $3)
                ON CONFLICT ({table.owner}, key) DO UPDATE SET value = EXCLUDED.value""",
            changed,
        )
