"""Typed rows: what shared/db's queries return, instead of ``asyncpg.Record``.

Frozen, slotted dataclasses, each built from its record by one small constructor
(``from_record``): the read path builds thousands per second, so a constructor only copies
the columns; jsonb aggregates arrive decoded already (shared/db/pool.py).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

import asyncpg

# --- servers ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Server:
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

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> Server:
        return cls(
            r["id"],
            r["tenant_id"],
            r["user_id"],
            r["name"],
            r["image_id"],
            r["flavor_id"],
            r["vcpus"],
            r["ram_mb"],
            r["disk_gb"],
            r["vm_state"],
            r["task_state"],
            r["power_state"],
            r["host"],
            r["progress"],
            r["access_ipv4"],
            r["access_ipv6"],
            r["locked"],
            r["version"],
            r["created_at"],
            r["updated_at"],
            r["launched_at"],
            r["deleted_at"],
            r["metadata"],
            r["addresses"],
            r["fault"],
        )


#: The columns of ``servers`` a ``LockedServer`` holds, for the queries that lock one.
LOCKED_SERVER_COLUMNS = (
    "id, tenant_id, host, vm_state, task_state, locked, locked_by, vcpus, ram_mb, disk_gb"
)


@dataclass(frozen=True, slots=True)
class LockedServer:
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

    @property
    def placed_host(self) -> str:
        """The host of a server known to be on one (an action that needs a host has checked:
        api_gateway/compute/checks.py ``check_on_a_host``)."""
        assert self.host is not None, f"server {self.id} is on no host"
        return self.host

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> LockedServer:
        return cls(
            r["id"],
            r["tenant_id"],
            r["host"],
            r["vm_state"],
            r["task_state"],
            r["locked"],
            r["locked_by"],
            r["vcpus"],
            r["ram_mb"],
            r["disk_gb"],
        )


@dataclass(frozen=True, slots=True)
class ServerStates:
    """What judging a hypervisor's word on a server's power needs (shared/db/server_power.py)."""

    id: uuid.UUID
    host: str | None
    vm_state: str
    task_state: str | None
    power_state: int
    updated_at: datetime

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> ServerStates:
        return cls(
            r["id"], r["host"], r["vm_state"], r["task_state"], r["power_state"], r["updated_at"]
        )


@dataclass(frozen=True, slots=True)
class StaleTask:
    """A server whose task nobody will finish (``stale_tasks.find``)."""

    id: uuid.UUID
    task_state: str
    task_started_at: datetime
    host: str | None
    #: its host stopped heartbeating
    host_down: bool
    #: the task's deadline
    deadline_s: float

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> StaleTask:
        return cls(
            r["id"],
            r["task_state"],
            r["task_started_at"],
            r["host"],
            r["host_down"],
            r["deadline_s"],
        )


@dataclass(frozen=True, slots=True)
class ServerEntry:
    """A server in a list page: enough for the plain list, and for the detailed one to tell
    which representations it has rendered already (``version``)."""

    id: uuid.UUID
    name: str
    version: int

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> ServerEntry:
        return cls(r["id"], r["name"], r["version"])


@dataclass(frozen=True, slots=True)
class HostedServer:
    """A live server a host holds resources for (``servers.on_host``)."""

    id: uuid.UUID
    name: str
    tenant_id: str
    flavor_id: str
    vcpus: int
    ram_mb: int
    disk_gb: int

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> HostedServer:
        return cls(
            r["id"],
            r["name"],
            r["tenant_id"],
            r["flavor_id"],
            r["vcpus"],
            r["ram_mb"],
            r["disk_gb"],
        )


@dataclass(frozen=True, slots=True)
class StateCount:
    """How many live servers are in one (vm_state, task_state)."""

    vm_state: str
    task_state: str | None
    count: int

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> StateCount:
        return cls(r["vm_state"], r["task_state"], r["count"])


# --- flavors ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Flavor:
    id: str
    name: str
    ram_mb: int
    disk_gb: int
    vcpus: int

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> Flavor:
        return cls(r["id"], r["name"], r["ram_mb"], r["disk_gb"], r["vcpus"])


@dataclass(frozen=True, slots=True)
class FlavorUsage:
    """A live flavor and how many live servers were built from it."""

    flavor: Flavor
    servers: int

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> FlavorUsage:
        return cls(Flavor.from_record(r), r["servers"])


# --- images ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Image:
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
    disk_format: str
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

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> Image:
        return cls(
            r["id"],
            r["name"],
            r["status"],
            r["progress"],
            r["owner"],
            r["user_id"],
            r["min_disk_gb"],
            r["min_ram_mb"],
            r["disk_format"],
            r["location"],
            r["server_id"],
            r["image_type"],
            r["created_at"],
            r["updated_at"],
            r["deleted_at"],
            r["metadata"],
            r["fault"],
        )


@dataclass(frozen=True, slots=True)
class LockedImage:
    """An image's row as ``images.lock`` holds it: who may change it."""

    id: uuid.UUID
    owner: str | None
    is_public: bool
    status: str

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> LockedImage:
        return cls(r["id"], r["owner"], r["is_public"], r["status"])


@dataclass(frozen=True, slots=True)
class ImageSharing:
    """What the image service API shows of an image and the compute API does not."""

    id: uuid.UUID
    is_public: bool
    size_bytes: int | None

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> ImageSharing:
        return cls(r["id"], r["is_public"], r["size_bytes"])


@dataclass(frozen=True, slots=True)
class StoredImage:
    """Where a live image's file is (``images.get_live``)."""

    name: str
    location: str | None
    size_bytes: int | None

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> StoredImage:
        return cls(r["name"], r["location"], r["size_bytes"])


# --- compute hosts ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Host:
    """A compute host: its capacity and what its servers hold (``hosts.get``)."""

    name: str
    #: the scheduler may place servers there
    enabled: bool
    up: bool
    vcpus: int
    ram_mb: int
    disk_gb: int
    vcpus_used: int
    ram_mb_used: int
    disk_gb_used: int

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> Host:
        return cls(
            r["name"],
            r["enabled"],
            r["up"],
            r["vcpus"],
            r["ram_mb"],
            r["disk_gb"],
            r["vcpus_used"],
            r["ram_mb_used"],
            r["disk_gb_used"],
        )


@dataclass(frozen=True, slots=True)
class HostOverview:
    """A compute host as the operator sees it (``hosts.overview``)."""

    name: str
    enabled: bool
    disabled_reason: str | None
    vcpus: int
    ram_mb: int
    disk_gb: int
    vcpus_used: int
    ram_mb_used: int
    disk_gb_used: int
    heartbeat_age: timedelta
    #: up, with a heartbeat recent enough (the scheduler's own test)
    alive: bool

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> HostOverview:
        return cls(
            r["name"],
            r["enabled"],
            r["disabled_reason"],
            r["vcpus"],
            r["ram_mb"],
            r["disk_gb"],
            r["vcpus_used"],
            r["ram_mb_used"],
            r["disk_gb_used"],
            r["heartbeat_age"],
            r["alive"],
        )


@dataclass(frozen=True, slots=True)
class ProjectUsage:
    """What one project's live servers on a host hold."""

    tenant_id: str
    vcpus: int
    ram_mb: int
    disk_gb: int

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> ProjectUsage:
        return cls(r["tenant_id"], r["vcpus"], r["ram_mb"], r["disk_gb"])


# --- migrations (resizes, cold and live migrations) ------------------------------------------


@dataclass(frozen=True, slots=True)
class MigrationRecord:
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

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> Migration:
        return cls(
            r["id"],
            r["server_id"],
            r["action_id"],
            r["source_host"],
            r["dest_host"],
            r["instance"],
            r["status"],
            r["held"],
            r["created_at"],
            r["updated_at"],
            r["old_flavor_id"],
            r["new_flavor_id"],
            r["new_flavor"],
        )


@dataclass(frozen=True, slots=True)
class LiveMigration(MigrationRecord):
    """A live migration (os-migrateLive): shared/db/live_migrations.py."""

    block_migration: bool
    disk_over_commit: bool

    COLUMNS: ClassVar[str] = f"{MIGRATION_COLUMNS}, block_migration, disk_over_commit"

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> LiveMigration:
        return cls(
            r["id"],
            r["server_id"],
            r["action_id"],
            r["source_host"],
            r["dest_host"],
            r["instance"],
            r["status"],
            r["held"],
            r["created_at"],
            r["updated_at"],
            r["block_migration"],
            r["disk_over_commit"],
        )


@dataclass(frozen=True, slots=True)
class MigrationEntry:
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

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> MigrationEntry:
        return cls(
            r["number"],
            r["server_id"],
            r["source_host"],
            r["dest_host"],
            r["old_flavor_id"],
            r["new_flavor_id"],
            r["status"],
            r["kind"],
            r["created_at"],
            r["updated_at"],
        )


# --- the audit trail, placement ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Action:
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

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> Action:
        return cls(
            r["id"],
            r["request_id"],
            r["server_id"],
            r["action"],
            r["tenant_id"],
            r["user_id"],
            r["started_at"],
            r["finished_at"],
            r["result"],
            r["message"],
        )


@dataclass(frozen=True, slots=True)
class PendingActions:
    """How many actions are under way, and how long ago the oldest began (None: none is)."""

    count: int
    oldest_age: timedelta | None

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> PendingActions:
        return cls(r["count"], r["oldest_age"])


@dataclass(frozen=True, slots=True)
class Placement:
    """What placing a server did: ``waiting`` (False: it no longer waited for a host, nothing
    was claimed) and the ``host`` claimed (None: no host had room)."""

    waiting: bool
    host: str | None

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> Placement:
        return cls(r["waiting"], r["host"])
