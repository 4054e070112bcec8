"""Typed rows: what shared/db's queries return, instead of ``asyncpg.Record``.

Frozen, slotted dataclasses, each built from its record by one constructor (``Row.from_record``:
each field is the column of its name): the read path builds thousands per second, so it only
copies the columns; jsonb aggregates arrive decoded already (shared/db/pool.py).
"""

from __future__ import annotations

import operator
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from functools import partial
from typing import Any, ClassVar, NamedTuple, Self

import asyncpg

#: Each ``Row`` class's constructor from a record, made at its first use.
_BUILDERS: dict[type, Callable[[asyncpg.Record], Any]] = {}


def _builder(row: type) -> Callable[[asyncpg.Record], Any]:
    """``row``'s constructor from a record, its columns named as its fields, all taken by
    one ``itemgetter`` call: a loop over the names takes half as long again (a ``Server``
    from an asyncpg record: 2.9 µs, against 4.5)."""
    names = [field.name for field in fields(row)]
    take = operator.itemgetter(*names)
    if len(names) == 1:  # itemgetter of one name gives the value, not a tuple
        return lambda r: row(take(r))
    return lambda r: row(*take(r))


class Row:
    """A typed row: a frozen, slotted dataclass whose fields are columns of its query."""

    __slots__ = ()

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> Self:
        build = _BUILDERS.get(cls)
        if build is None:
            build = _BUILDERS[cls] = _builder(cls)
        row: Self = build(r)
        return row


# --- servers ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Server(Row):
    """A server with everything its API representation needs (``servers.get``)."""

    id: uuid.UUID
    tenant_id: str
    user_id: str
    name: str
    image_id: uuid.UUID
    flavor_id: str
    vcpus: int
    ram_mb: int
    disk_gb: int
    vm_state: str
    task_state: str | None
    power_state: int
    host: str | None
    progress: int
    access_ipv4: str
    access_ipv6: str
    locked: bool
    version: int
    created_at: datetime
    updated_at: datetime
    launched_at: datetime | None
    deleted_at: datetime | None
    #: key -> value
    metadata: dict[str, str]
    #: {"network", "version", "addr"} each, in network, version, address order
    addresses: list[dict[str, Any]]
    #: the latest fault ({"code", "message", "details", "created"}) of a server in ERROR
    fault: dict[str, Any] | None
    #: who holds the lock, as nova records it: "owner" or "admin" (None: unlocked)
    locked_by_role: str | None = None
    #: the name of the key pair given on create (None: none)
    key_name: str | None = None
    #: whether the create asked for a config drive (os-config-drive's ``config_drive``)
    config_drive: bool = False


#: The columns of ``servers`` a ``LockedServer`` holds, for the queries that lock one.
LOCKED_SERVER_COLUMNS = (
    "id, tenant_id, host, vm_state, task_state, locked, locked_by, vcpus, ram_mb, disk_gb,"
    " locked_by_role"
)


@dataclass(frozen=True, slots=True)
class LockedServer(Row):
    """A server's row as ``servers.lock`` holds it: what deciding on the server needs."""

    id: uuid.UUID
    tenant_id: str
    host: str | None
    vm_state: str
    task_state: str | None
    locked: bool
    #: the user who locked it (None: unlocked)
    locked_by: str | None
    vcpus: int
    ram_mb: int
    disk_gb: int
    #: who holds the lock, as nova records it: "owner" or "admin" (None: unlocked)
    locked_by_role: str | None = None

    @property
    def placed_host(self) -> str:
        """The host of a server known to be on one (an action that needs a host has checked:
        api_gateway/compute/checks.py ``check_on_a_host``)."""
        assert self.host is not None, f"server {self.id} is on no host"
        return self.host


@dataclass(frozen=True, slots=True)
class ServerStates(Row):
    """What judging a hypervisor's word on a server's power needs (shared/db/server_power.py)."""

    id: uuid.UUID
    host: str | None
    vm_state: str
    task_state: str | None
    power_state: int
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class StaleTask(Row):
    """A server whose task nobody will finish (``stale_tasks.find``)."""

    id: uuid.UUID
    task_state: str
    task_started_at: datetime
    host: str | None
    #: its host stopped heartbeating
    host_down: bool
    #: the task's deadline
    deadline_s: float
    #: the task ran past its deadline (stale whatever its host)
    past_deadline: bool


class ServerEntry(NamedTuple):
    """A server in a list page: enough for the plain list, and for the detailed one to tell
    which representations it has rendered already (``version``).

    A named tuple, not a ``Row``: every list request builds a page of them, and a tuple made
    from the record's values in one call costs a third of a frozen dataclass (101 entries:
    19 µs against 63, about a tenth of a cached ``servers/detail`` request)."""

    id: uuid.UUID
    name: str
    version: int

    @classmethod
    def from_records(cls, records: Iterable[asyncpg.Record]) -> list[ServerEntry]:
        """Each record must hold exactly ``id, name, version``, in that order
        (``servers.list_page``); the tuples are made in C, no Python call per row."""
        return list(map(partial(tuple.__new__, cls), records))


@dataclass(frozen=True, slots=True)
class HostedServer(Row):
    """A live server a host holds resources for (``servers.on_host``)."""

    id: uuid.UUID
    name: str
    tenant_id: str
    flavor_id: str
    vcpus: int
    ram_mb: int
    disk_gb: int


@dataclass(frozen=True, slots=True)
class StateCount(Row):
    """How many live servers are in one (vm_state, task_state)."""

    vm_state: str
    task_state: str | None
    count: int


# --- flavors ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Flavor(Row):
    id: str
    name: str
    ram_mb: int
    disk_gb: int
    vcpus: int
    #: what nova 2013.1's flavor extensions showed (migration 0013; nova's values by default)
    swap_mb: int = 0
    ephemeral_gb: int = 0
    rxtx_factor: float = 1.0
    is_public: bool = True
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class FlavorUsage(Row):
    """A live flavor and how many live servers were built from it."""

    flavor: Flavor
    servers: int

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> FlavorUsage:
        return cls(Flavor.from_record(r), r["servers"])


# --- images ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Image(Row):
    """An image with everything its API representation needs (``images.get``)."""

    id: uuid.UUID
    name: str
    #: the image service's status: queued, saving, active, killed, deleted
    status: str
    progress: int
    #: the owning project (None: the provider's)
    owner: str | None
    user_id: str | None
    min_disk_gb: int
    min_ram_mb: int
    #: None only for an image created through the image API whose format is not said yet
    disk_format: str | None
    #: the image file's path in the image store
    location: str | None
    #: the server a snapshot or backup was made from
    server_id: uuid.UUID | None
    image_type: str
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None
    #: key -> value
    metadata: dict[str, str]
    #: {"code", "message", "details", "created"} of an image that failed
    fault: dict[str, Any] | None
    #: the MD5 of its data (None: not known)
    checksum: str | None = None


@dataclass(frozen=True, slots=True)
class LockedImage(Row):
    """An image's row as ``images.lock`` holds it: who may change it."""

    id: uuid.UUID
    owner: str | None
    is_public: bool
    status: str
    #: a protected image cannot be deleted (Glance's ``protected``)
    protected: bool


@dataclass(frozen=True, slots=True)
class ImageSharing(Row):
    """What the image service API shows of an image and the compute API does not."""

    id: uuid.UUID
    is_public: bool
    size_bytes: int | None
    #: as the image's creator gave it (None: not yet said; ``bare`` for images not uploaded)
    container_format: str | None
    #: a protected image cannot be deleted (Glance's ``protected``)
    protected: bool
    #: MD5 and SHA-512 of the uploaded data (None: not uploaded through the image API)
    checksum: str | None
    os_hash_algo: str | None
    os_hash_value: str | None


@dataclass(frozen=True, slots=True)
class StoredImage(Row):
    """Where a live image's file is (``images.get_live``)."""

    name: str
    location: str | None
    size_bytes: int | None


# --- compute hosts ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HostRoom(Row):
    """What every row of a compute host has: its name, whether the scheduler may place
    servers there, its capacity and what its servers hold."""

    name: str
    #: the scheduler may place servers there
    enabled: bool
    vcpus: int
    ram_mb: int
    disk_gb: int
    vcpus_used: int
    ram_mb_used: int
    disk_gb_used: int


@dataclass(frozen=True, slots=True)
class Host(HostRoom):
    """A compute host as the scheduler sees it (``hosts.get``)."""

    up: bool


@dataclass(frozen=True, slots=True)
class HostOverview(HostRoom):
    """A compute host as the operator sees it (``hosts.overview``)."""

    disabled_reason: str | None
    heartbeat_age: timedelta
    #: up, with a heartbeat recent enough (the scheduler's own test)
    alive: bool


@dataclass(frozen=True, slots=True)
class HostService(Row):
    """A compute host as nova's os-services shows its nova-compute (``hosts.services``)."""

    #: the service's ``id``: a stable integer, numbered as hosts register
    service_id: int
    name: str
    enabled: bool
    #: why an administrator disabled it (None: no reason given, or enabled)
    disabled_reason: str | None
    last_heartbeat: datetime
    #: up, with a heartbeat recent enough (the scheduler's own test)
    alive: bool


@dataclass(frozen=True, slots=True)
class ProjectUsage(Row):
    """What one project's live servers on a host hold."""

    tenant_id: str
    vcpus: int
    ram_mb: int
    disk_gb: int


# --- migrations (resizes, cold and live migrations) ------------------------------------------


@dataclass(frozen=True, slots=True)
class MigrationRecord(Row):
    """What every record in ``migrations`` has, of either kind: the workflow of steps between
    two hosts that conductor/steps.py drives."""

    id: uuid.UUID
    server_id: uuid.UUID
    #: the action it serves
    action_id: uuid.UUID
    source_host: str
    #: None until the conductor places a resize
    dest_host: str | None
    #: the server as it was (a ``shared.messages.InstanceSpec``, as JSON)
    instance: dict[str, Any]
    status: str
    #: the claim it holds beside the server row's: ``source``, ``dest`` or None
    held: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def placed_dest(self) -> str:
        """The destination of a record known to be placed (one that holds a claim is)."""
        assert self.dest_host is not None, f"migration {self.id} is not placed"
        return self.dest_host


#: The columns of ``migrations`` every ``MigrationRecord`` holds, in its fields' order.
MIGRATION_COLUMNS = (
    "id, server_id, action_id, source_host, dest_host, instance, status, held, created_at,"
    " updated_at"
)


@dataclass(frozen=True, slots=True)
class Migration(MigrationRecord):
    """A resize, or a cold migration (a resize that keeps the flavor): shared/db/
    server_migrations.py."""

    old_flavor_id: str
    new_flavor_id: str
    #: the flavor it goes to (a ``shared.messages.FlavorSpec``, as JSON)
    new_flavor: dict[str, Any]

    COLUMNS: ClassVar[str] = f"{MIGRATION_COLUMNS}, old_flavor_id, new_flavor_id, new_flavor"


@dataclass(frozen=True, slots=True)
class LiveMigration(MigrationRecord):
    """A live migration (os-migrateLive): shared/db/live_migrations.py."""

    block_migration: bool
    disk_over_commit: bool

    COLUMNS: ClassVar[str] = f"{MIGRATION_COLUMNS}, block_migration, disk_over_commit"


@dataclass(frozen=True, slots=True)
class MigrationEntry(Row):
    """A migration of either kind as the os-migrations extension lists it
    (shared/db/migration_history.py)."""

    #: its number, the extension's integer id
    number: int
    server_id: uuid.UUID
    source_host: str
    dest_host: str | None
    old_flavor_id: str
    new_flavor_id: str
    status: str
    #: ``resize`` or ``live-migration``
    kind: str
    created_at: datetime
    updated_at: datetime


# --- key pairs (os-keypairs) --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Keypair(Row):
    """A user's key pair: its public half only (``shared/db/keypairs.py``)."""

    user_id: str
    name: str
    #: MD5 of the key blob, colon-separated hex (nova 2013.1's)
    fingerprint: str
    public_key: str
    created_at: datetime


# --- the audit trail, placement ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Action(Row):
    """An action recorded for a server (os-instance-actions)."""

    id: uuid.UUID
    request_id: str
    server_id: uuid.UUID
    action: str
    tenant_id: str
    user_id: str
    started_at: datetime
    finished_at: datetime | None
    #: pending, success or error
    result: str
    message: str | None


@dataclass(frozen=True, slots=True)
class PendingActions(Row):
    """How many actions are under way, and how long ago the oldest began (None: none is)."""

    count: int
    oldest_age: timedelta | None


@dataclass(frozen=True, slots=True)
class Placement(Row):
    """What placing a server did: ``waiting`` (False: it no longer waited for a host, nothing
    was claimed) and the ``host`` claimed (None: no host had room)."""

    waiting: bool
    host: str | None
