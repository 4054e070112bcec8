"""Queries on ``servers`` and their children (metadata, addresses, faults).

State changes are conditional updates (``... WHERE task_state IS NULL AND vm_state = ANY(..)``)
so that two requests racing on one server cannot both win: the loser's update matches no row.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from shared.db.pool import Conn, Executor
from shared.db.records import (
    LOCKED_SERVER_COLUMNS,
    HostedServer,
    LockedServer,
    Server,
    ServerEntry,
    StateCount,
)
from shared.db.sql import Params, Where
from shared.messages import Fault, GuestData, InjectedFile
from shared.states import TaskState, VmState

#: A server with everything its API representation needs, in one round trip.
_SELECT = """
SELECT s.id, s.tenant_id, s.user_id, s.name, s.image_id, s.flavor_id, s.vcpus, s.ram_mb,
       s.disk_gb, s.vm_state, s.task_state, s.power_state, s.host, s.progress, s.access_ipv4,
       s.access_ipv6, s.locked, s.version, s.created_at, s.updated_at, s.launched_at,
       s.deleted_at, s.locked_by_role, s.key_name, s.config_drive,
       COALESCE((SELECT jsonb_object_agg(m.key, m.value) FROM server_metadata m
                  WHERE m.server_id = s.id), '{}'::jsonb) AS metadata,
       COALESCE((SELECT jsonb_agg(jsonb_build_object('network', a.network,
                                                     'version', a.version,
                                                     'addr', host(a.address))
                                  ORDER BY a.network, a.version, a.address)
                   FROM server_addresses a WHERE a.server_id = s.id), '[]'::jsonb) AS addresses,
       CASE WHEN s.vm_state = 'error' THEN
           (SELECT jsonb_build_object(
                       'code', f.code, 'message', f.message, 'details', f.details,
                       'created', to_char(f.created_at AT TIME ZONE 'UTC',
                                          'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
              FROM server_faults f WHERE f.server_id = s.id ORDER BY f.id DESC LIMIT 1)
       END AS fault
  FROM servers s
"""


@dataclass(frozen=True)
class NewServer:
    id: uuid.UUID
    tenant_id: str
    user_id: str
    name: str
    image_id: uuid.UUID
    flavor_id: str
    vcpus: int
    ram_mb: int
    disk_gb: int
    access_ipv4: str
    access_ipv6: str
    metadata: Mapping[str, str]
    #: the key pair named on create: its name, public key and fingerprint (None: no key)
    key_name: str | None = None
    key_data: str | None = None
    key_fingerprint: str | None = None
    #: the reservation of the create request it came from (every server of a multiple
    #: create shares it; nova's ``reservation_id``)
    reservation_id: str | None = None
    #: what its config drive delivers (the key above too): shared/messages.py ``GuestData``
    config_drive: bool = False
    user_data: str | None = None
    injected_files: tuple[InjectedFile, ...] = ()
    #: its index in its multiple create, from 0
    launch_index: int = 0

    @property
    def guest(self) -> GuestData:
        return GuestData(
            project_id=self.tenant_id,
            config_drive=self.config_drive,
            files=self.injected_files,
            user_data=self.user_data,
            key_name=self.key_name,
            key_data=self.key_data,
            launch_index=self.launch_index,
            reservation_id=self.reservation_id,
        )


@dataclass(frozen=True)
class CreateAction:
    """The create action recorded with a new server: its row in ``actions`` (the audit
    trail), pending and not sent yet, as ``actions.record(..., sent=False)`` writes it."""

    id: uuid.UUID
    request_id: str


_INSERT_SERVER = """INSERT INTO servers (id, tenant_id, user_id, name, image_id, flavor_id, vcpus,
                                ram_mb, disk_gb, vm_state, task_state, access_ipv4,
                                access_ipv6, key_name, key_data, key_fingerprint,
                                reservation_id, config_drive, user_data, injected_files,
                                launch_index)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                   $17, $18, $19, $20, $21)"""

#: The server, its metadata and its create action in one statement: one round trip instead
#: of three. The foreign keys of the metadata and the action on the server are checked at
#: the end of the statement, when the server's row is there.
_INSERT_SERVER_WITH_ACTION = f"""
WITH server AS ({_INSERT_SERVER} RETURNING id),
     metadata AS (
    INSERT INTO server_metadata (server_id, key, value)
    SELECT $1, m.key, m.value FROM unnest($22::text[], $23::text[]) AS m (key, value))
INSERT INTO actions (id, request_id, server_id, action, tenant_id, user_id, sent)
VALUES ($24, $25, $1, 'create', $2, $3, false)"""


async def insert(conn: Conn, server: NewServer, *, action: CreateAction | None = None) -> None:
    """Insert a new server waiting for a host (BUILD, task ``scheduling``), and, when given,
    its create ``action`` in the same statement (the gateway's create)."""
    values = [
        server.id,
        server.tenant_id,
        server.user_id,
        server.name,
        server.image_id,
        server.flavor_id,
        server.vcpus,
        server.ram_mb,
        server.disk_gb,
        VmState.BUILDING.value,
        TaskState.SCHEDULING.value,
        server.access_ipv4,
        server.access_ipv6,
        server.key_name,
        server.key_data,
        server.key_fingerprint,
        server.reservation_id,
        server.config_drive,
        server.user_data,
        [injected.model_dump() for injected in server.injected_files],
        server.launch_index,
    ]
    if action is not None:
        await conn.execute(
            _INSERT_SERVER_WITH_ACTION,
            *values,
            list(server.metadata),
            list(server.metadata.values()),
            action.id,
            action.request_id,
        )
        return
    await conn.execute(_INSERT_SERVER, *values)
    if server.metadata:
        await conn.executemany(
            "INSERT INTO server_metadata (server_id, key, value) VALUES ($1, $2, $3)",
            [(server.id, k, v) for k, v in server.metadata.items()],
        )


async def get(conn: Executor, server_id: uuid.UUID, tenant_id: str | None) -> Server | None:
    """A live server of ``tenant_id`` (any tenant when None: admin or internal use)."""
    row: asyncpg.Record | None = await conn.fetchrow(
        f"{_SELECT} WHERE s.id = $1 AND s.deleted_at IS NULL"
        " AND ($2::text IS NULL OR s.tenant_id = $2)",
        server_id,
        tenant_id,
    )
    return None if row is None else Server.from_record(row)


async def guest_data(conn: Executor, server_id: uuid.UUID) -> GuestData:
    """What the server's config drive delivers (a server that is gone delivers nothing)."""
    row = await conn.fetchrow(
        """SELECT tenant_id, config_drive, injected_files, user_data, key_name, key_data,
                  launch_index, reservation_id
             FROM servers WHERE id = $1""",
        server_id,
    )
    if row is None:
        return GuestData()
    return GuestData(
        project_id=row["tenant_id"],
        config_drive=row["config_drive"],
        files=tuple(InjectedFile.model_validate(f) for f in row["injected_files"]),
        user_data=row["user_data"],
        key_name=row["key_name"],
        key_data=row["key_data"],
        launch_index=row["launch_index"],
        reservation_id=row["reservation_id"],
    )


async def set_injected_files(
    conn: Executor, server_id: uuid.UUID, files: Sequence[InjectedFile]
) -> None:
    """A rebuild's personality: the files the server's drive delivers from now on."""
    await conn.execute(
        "UPDATE servers SET injected_files = $2 WHERE id = $1",
        server_id,
        [injected.model_dump() for injected in files],
    )


async def lock(conn: Conn, server_id: uuid.UUID, tenant_id: str | None) -> LockedServer | None:
    """The live row, locked until the transaction ends: whoever holds it decides alone."""
    row: asyncpg.Record | None = await conn.fetchrow(
        f"""SELECT {LOCKED_SERVER_COLUMNS}
             FROM servers
            WHERE id = $1 AND deleted_at IS NULL AND ($2::text IS NULL OR tenant_id = $2)
              FOR UPDATE""",
        server_id,
        tenant_id,
    )
    return None if row is None else LockedServer.from_record(row)


async def peek(conn: Executor, server_id: uuid.UUID) -> LockedServer | None:
    """A live server's deciding columns (those ``lock`` gives), not locked: what a build
    checks before it places the server (conductor/build.py), without the metadata, addresses
    and fault that ``get`` gathers for the API."""
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {LOCKED_SERVER_COLUMNS} FROM servers WHERE id = $1 AND deleted_at IS NULL",
        server_id,
    )
    return None if row is None else LockedServer.from_record(row)


@dataclass(frozen=True)
class ServerFilters:
    """What a server list is narrowed to (guide 2.1.1); None means "not filtered on"."""

    image_id: uuid.UUID | None = None
    flavor_id: str | None = None
    #: a PostgreSQL regular expression the name must match (anywhere in it)
    name_regex: str | None = None
    vm_states: frozenset[str] | None = None
    #: only servers changed at or after this instant, deleted ones included (guide 1.5)
    changes_since: datetime | None = None
    #: only the servers of one create request (nova's ``reservation_id`` filter)
    reservation_id: str | None = None

    def predicates(self, params: Params) -> list[str]:
        """SQL conditions on ``servers s`` (the tenant's own condition comes first)."""
        where = Where(params, "s", self.changes_since)
        where.compare("image_id", "=", self.image_id)
        where.compare("flavor_id", "=", self.flavor_id)
        where.among("vm_state", self.vm_states)
        where.compare("name", "~", self.name_regex)
        where.compare("reservation_id", "=", self.reservation_id)
        return where.conditions


async def list_page(
    conn: Executor,
    tenant_id: str | None,
    *,
    marker: uuid.UUID | None,
    limit: int,
    filters: ServerFilters | None = None,
) -> list[ServerEntry]:
    """One page of ``tenant_id``'s servers matching ``filters``, newest first, after
    ``marker`` (keyset). Deleted servers only with ``changes_since``.

    Only ``id``, ``name`` and ``version``: enough for the plain list, and for the detailed
    one to tell which representations it already has rendered (see ``get_many``). An invalid
    ``name_regex`` raises ``asyncpg.InvalidRegularExpressionError``.
    """
    sql, values = page_query(tenant_id, marker=marker, limit=limit, filters=filters)
    return ServerEntry.from_records(await conn.fetch(sql, *values))


#: A page's entries as its key in the render cache: its rows' ids (16 bytes each) and
#: versions (8, big-endian), each packed in one ``bytes`` (empty sequences: no rows). Packed,
#: not tuples of a hundred UUIDs and ints: one object to decode, hash and compare instead of
#: two hundred, which cost a fifth of a cached ``servers/detail`` request.
PageVersions = tuple[Sequence[int], Sequence[int]]


async def page_versions(
    conn: Executor,
    tenant_id: str | None,
    *,
    marker: uuid.UUID | None,
    limit: int,
    filters: ServerFilters | None = None,
) -> PageVersions:
    """The ids and versions of the rows ``list_page`` returns, packed as ``packed_versions``
    packs them (two ``bytea`` in one row): what the detailed list needs to find a page it
    rendered before, decoded without an object per row. Nothing relies on their order being
    the page's (it is, the aggregate reads the ordered page): a page is rendered and keyed
    from ``list_page``'s rows, so another order would find nothing, never another page."""
    sql, values = page_query(tenant_id, marker=marker, limit=limit, filters=filters)
    row = await conn.fetchrow(
        "SELECT string_agg(uuid_send(p.id), ''::bytea), string_agg(int8send(p.version), ''::bytea)"
        f" FROM ({sql}) p",
        *values,
    )
    assert row is not None  # an aggregate without GROUP BY returns one row
    ids, versions = row
    return (ids, versions) if ids is not None else (b"", b"")


def packed_versions(rows: Sequence[ServerEntry]) -> PageVersions:
    """``page_versions`` of rows ``list_page`` returned, packed here as PostgreSQL packs them
    there (``uuid_send``: the 16 bytes; ``int8send``: 8 bytes, big-endian, signed), so that a
    page is kept under the key its next lookup computes."""
    return (
        b"".join([row.id.bytes for row in rows]),
        b"".join([row.version.to_bytes(8, "big", signed=True) for row in rows]),
    )


def page_query(
    tenant_id: str | None,
    *,
    marker: uuid.UUID | None,
    limit: int,
    filters: ServerFilters | None = None,
) -> tuple[str, list[object]]:
    """The statement of ``list_page`` and its parameters, apart so that tests and benchmarks
    can EXPLAIN it: a project's page must walk ``limit`` entries of servers_tenant_created
    (servers_tenant_updated narrows changes-since to what changed), never sort the whole
    project, so a page of a project with 10,000 servers costs what one of 100 does.

    An administrator's list of every project (``tenant_id`` None) sorts all live servers:
    an index on (created_at, id) alone would serve it, but asyncpg's prepared statements get
    generic plans, and in a deployment of few projects the generic plan of a project's page
    would walk that index past every other project's newer servers instead."""
    params = Params()
    # the tenant is a literal predicate, not "$1 IS NULL OR ...", so the planner can use the
    # (tenant_id, created_at, id) index with a generic plan too
    where = [] if tenant_id is None else [f"s.tenant_id = {params.add(tenant_id)}"]
    where += (filters or ServerFilters()).predicates(params)
    if marker is not None:
        # keyset: the row comparison is an index condition, so the page starts at the marker
        where.append(
            "(s.created_at, s.id) < (SELECT created_at, id FROM servers"
            f" WHERE id = {params.add(marker)})"
        )
    sql = (
        f"SELECT s.id, s.name, s.version FROM servers s WHERE {' AND '.join(where)}"
        f" ORDER BY s.created_at DESC, s.id DESC LIMIT {params.add(limit)}"
    )
    return sql, params.values


async def get_many(conn: Executor, server_ids: list[uuid.UUID]) -> list[Server]:
    """Full rows of these servers (any order; deleted ones included)."""
    rows = await conn.fetch(f"{_SELECT} WHERE s.id = ANY($1::uuid[])", server_ids)
    return [Server.from_record(r) for r in rows]


async def exists(conn: Executor, server_id: uuid.UUID, tenant_id: str | None) -> bool:
    """Is there such a server (of ``tenant_id``; of any project when None)?"""
    return bool(
        await conn.fetchval(
            "SELECT 1 FROM servers WHERE id = $1 AND ($2::text IS NULL OR tenant_id = $2)",
            server_id,
            tenant_id,
        )
    )


#: Columns a user may change with Update Server (Table 2.2).
_UPDATABLE = frozenset({"name", "access_ipv4", "access_ipv6"})


async def update_fields(conn: Executor, server_id: uuid.UUID, changes: Mapping[str, str]) -> bool:
    """Set the user-editable ``changes`` (column -> value) of a live server (the caller has
    locked the row it may reach); False when there is no such server."""
    if not changes or not set(changes) <= _UPDATABLE:
        raise ValueError(f"not updatable: {sorted(set(changes) - _UPDATABLE) or 'nothing'}")
    params = Params(server_id)
    sets = ", ".join(f"{column} = {params.add(value)}" for column, value in changes.items())
    status = await conn.execute(
        f"UPDATE servers SET {sets} WHERE id = $1 AND deleted_at IS NULL",
        *params.values,
    )
    return bool(status != "UPDATE 0")


async def unassign_host(conn: Executor, server_id: uuid.UUID) -> None:
    """The server no longer holds anything on a host (its build failed there)."""
    await conn.execute("UPDATE servers SET host = NULL WHERE id = $1", server_id)


async def set_task(conn: Executor, server_id: uuid.UUID, task: str | None) -> None:
    await conn.execute("UPDATE servers SET task_state = $2 WHERE id = $1", server_id, task)


async def restore_task(
    conn: Executor, server_id: uuid.UUID, *, task: str, previous: str | None
) -> None:
    """Undo ``set_task`` when the command could not be sent (unless someone moved on)."""
    await conn.execute(
        "UPDATE servers SET task_state = $3 WHERE id = $1 AND task_state = $2",
        server_id,
        task,
        previous,
    )


async def mark_deleted(conn: Executor, server_id: uuid.UUID) -> bool:
    """Soft-delete the row (it stays visible to changes-since as DELETED)."""
    status = await conn.execute(
        """UPDATE servers SET vm_state = 'deleted', task_state = NULL, power_state = 0,
                              deleted_at = now()
            WHERE id = $1 AND deleted_at IS NULL""",
        server_id,
    )
    return bool(status != "UPDATE 0")


async def add_fault(conn: Executor, server_id: uuid.UUID, fault: Fault) -> None:
    await conn.execute(
        "INSERT INTO server_faults (server_id, code, message, details) VALUES ($1, $2, $3, $4)",
        server_id,
        fault.code,
        fault.message,
        fault.details,
    )


async def set_error(
    conn: Executor, server_id: uuid.UUID, fault: Fault, *, expected_task: str | None
) -> bool:
    """Put the server in ERROR with ``fault`` if it still runs ``expected_task``."""
    status = await conn.execute(
        """UPDATE servers SET vm_state = 'error', task_state = NULL
            WHERE id = $1 AND deleted_at IS NULL AND task_state IS NOT DISTINCT FROM $2""",
        server_id,
        expected_task,
    )
    if status == "UPDATE 0":
        return False
    await add_fault(conn, server_id, fault)
    return True


_COMPLETE_TASK = """UPDATE servers SET vm_state = $2, task_state = NULL, power_state = $3,
                              progress = 100, launched_at = COALESCE(launched_at, now())
                     WHERE id = $1"""

#: ``_COMPLETE_TASK`` and the success of the action it ends, as ``actions.finish`` closes
#: one: one round trip for the report of every spawn (and every other task of one step).
_COMPLETE_TASK_AND_ACTION = f"""
WITH completed AS ({_COMPLETE_TASK})
UPDATE actions SET result = 'success', message = $5, finished_at = now()
 WHERE id = $4 AND result = 'pending'"""


async def complete_task(
    conn: Executor,
    server_id: uuid.UUID,
    *,
    vm_state: VmState,
    power_state: int,
    action_id: uuid.UUID | None = None,
    action_message: str | None = None,
) -> None:
    """End the server's task as done: ``vm_state``, ``power_state``, progress 100, launched
    (once: a later task keeps the first launch's time). The caller holds the row lock and
    has checked the task that ends. With ``action_id``, the action the task served is
    closed as a success (with ``action_message``) in the same statement."""
    if action_id is None:
        await conn.execute(_COMPLETE_TASK, server_id, vm_state.value, power_state)
        return
    await conn.execute(
        _COMPLETE_TASK_AND_ACTION,
        server_id,
        vm_state.value,
        power_state,
        action_id,
        action_message,
    )


@dataclass(frozen=True)
class Completion:
    """A task of one step reported done: ``task`` of the server, on ``host``, for the pending
    action ``action_id``; the server is then ``vm_state`` with ``power_state``, and the action
    a success with ``action_message``."""

    server_id: uuid.UUID
    task: str
    host: str
    action_id: uuid.UUID
    vm_state: VmState
    power_state: int
    action_message: str | None = None


#: ``_COMPLETE_TASK_AND_ACTION`` only if the report is the one awaited: the server's row,
#: locked first, is live, runs ``$6`` on host ``$7``, and the action ``$4`` is pending (its
#: UPDATE reads the latest row, so an action closed meanwhile is seen). The server's row is
#: locked before the action's, as in a report's transaction (conductor/reports.py). Each
#: row is found by its key alone: one statement per server, whatever PostgreSQL thinks of
#: the tables' sizes (a join of many completions, planned on a young cloud's stale
#: statistics, scanned a host's servers for each).
_COMPLETE_AWAITED_TASK = """
WITH awaiting AS (
    SELECT id FROM servers
     WHERE id = $1 AND deleted_at IS NULL AND task_state = $6 AND host = $7
       FOR UPDATE),
     finished AS (
    UPDATE actions a SET result = 'success', message = $5, finished_at = now()
      FROM awaiting
     WHERE a.id = $4 AND a.result = 'pending'
    RETURNING a.id)
UPDATE servers s SET vm_state = $2, task_state = NULL, power_state = $3, progress = 100,
                     launched_at = COALESCE(launched_at, now())
  FROM finished
 WHERE s.id = $1
RETURNING s.id"""


async def complete_awaited_tasks(conn: Conn, completions: list[Completion]) -> list[bool]:
    """``complete_task`` with its action for each of ``completions`` that is the one its
    server awaits (the server is live, runs the task on the host, the action is pending: a
    report's legality, conductor/legality.py, for a task of one step); for each, whether it
    was applied (False: nothing changed for it). One round trip and one transaction for
    all: the statement of each is sent at once (``fetchmany``), in the order of the actions'
    ids, the order every writer of several actions locks them in (``actions.mark_sent``), so
    that none waits for another in a cycle. At most one completion a server."""
    assert len({c.server_id for c in completions}) == len(completions), "one a server"
    ordered = sorted(completions, key=lambda c: c.action_id)
    rows = await conn.fetchmany(
        _COMPLETE_AWAITED_TASK,
        [
            (
                c.server_id,
                c.vm_state.value,
                c.power_state,
                c.action_id,
                c.action_message,
                c.task,
                c.host,
            )
            for c in ordered
        ],
    )
    applied = {row["id"] for row in rows}
    return [c.server_id in applied for c in completions]


async def deleted_among(conn: Executor, server_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    """Those of ``server_ids`` the database has deleted, in order."""
    rows = await conn.fetch(
        "SELECT id FROM servers WHERE id = ANY($1::uuid[]) AND deleted_at IS NOT NULL",
        list(server_ids),
    )
    return sorted(r["id"] for r in rows)


# --- server actions (rebuild, resize, snapshot) -------------------------------------------


async def set_image(
    conn: Executor, server_id: uuid.UUID, image_id: uuid.UUID, *, progress: int
) -> None:
    """The image the server is (re)built from, and how far that build is."""
    await conn.execute(
        "UPDATE servers SET image_id = $2, progress = $3 WHERE id = $1",
        server_id,
        image_id,
        progress,
    )


async def move(
    conn: Executor, server_id: uuid.UUID, host: str, *, vcpus: int, ram_mb: int, disk_gb: int
) -> None:
    """Account the server on ``host`` with these resources (a resize's claim it now holds)."""
    await conn.execute(
        "UPDATE servers SET host = $2, vcpus = $3, ram_mb = $4, disk_gb = $5 WHERE id = $1",
        server_id,
        host,
        vcpus,
        ram_mb,
        disk_gb,
    )


async def advance(
    conn: Executor,
    server_id: uuid.UUID,
    *,
    task: str | None,
    vm_state: str | None = None,
    power_state: int | None = None,
    flavor_id: str | None = None,
) -> None:
    """Move the server to its next ``task`` (None: the task is over, progress 100), changing
    ``vm_state``, ``power_state`` and ``flavor_id`` where given. Callers hold the row lock
    and have checked the task that ends."""
    await conn.execute(
        """UPDATE servers
              SET task_state = $2,
                  vm_state = COALESCE($3, vm_state),
                  power_state = COALESCE($4, power_state),
                  flavor_id = COALESCE($5, flavor_id),
                  progress = CASE WHEN $2::text IS NULL THEN 100 ELSE progress END
            WHERE id = $1""",
        server_id,
        task,
        vm_state,
        power_state,
        flavor_id,
    )


# --- admin actions (lock, unlock, os-resetState) ------------------------------------------


async def set_locked(
    conn: Executor, server_id: uuid.UUID, *, locked_by: str | None, role: str | None = None
) -> None:
    """Lock the server for ``locked_by`` (a user id) holding it as ``role`` ("owner" or
    "admin"), or unlock it (None)."""
    await conn.execute(
        "UPDATE servers SET locked = $2, locked_by = $3, locked_by_role = $4 WHERE id = $1",
        server_id,
        locked_by is not None,
        locked_by,
        role if locked_by is not None else None,
    )


async def reset_state(conn: Executor, server_id: uuid.UUID, vm_state: VmState) -> None:
    """Force the server into ``vm_state`` with no task (os-resetState); the caller holds the
    row lock and has dealt with what the ended task left behind."""
    await conn.execute(
        "UPDATE servers SET vm_state = $2, task_state = NULL WHERE id = $1",
        server_id,
        vm_state.value,
    )


# --- the operator's view (stratus host evacuate-plan, stratus status) ------------------------


async def on_host(conn: Executor, host: str) -> list[HostedServer]:
    """The live servers ``host`` holds resources for, largest first (the order that packs
    them best elsewhere): id, name, tenant_id, flavor_id, vcpus, ram_mb, disk_gb."""
    rows = await conn.fetch(
        "SELECT id, name, tenant_id, flavor_id, vcpus, ram_mb, disk_gb FROM servers"
        " WHERE host = $1 AND deleted_at IS NULL"
        " ORDER BY ram_mb DESC, vcpus DESC, disk_gb DESC, created_at, id",
        host,
    )
    return [HostedServer.from_record(r) for r in rows]


async def count_by_state(conn: Executor) -> list[StateCount]:
    """How many live servers are in each (vm_state, task_state): vm_state, task_state, count."""
    rows = await conn.fetch(
        "SELECT vm_state, task_state, count(*)::int AS count FROM servers"
        " WHERE deleted_at IS NULL GROUP BY vm_state, task_state"
    )
    return [StateCount.from_record(r) for r in rows]
