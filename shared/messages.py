"""Every message on the bus, as a versioned pydantic model.

A message is JSON on the wire. Its envelope (``type``, ``version``, ``message_id``,
``request_id``, ``server_id``, ``sent_at``) is the same for all; ``parse`` turns bytes back into
the right class by ``type``. Delivery is at least once, so every handler must be idempotent:
``message_id`` identifies a delivery, ``action_id`` the user's action it serves.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


def _now() -> datetime:
    return datetime.now(UTC)


class Message(BaseModel):
    """The envelope every message shares."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str
    version: int = 1
    message_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    request_id: str = ""
    server_id: uuid.UUID | None = None
    sent_at: datetime = Field(default_factory=_now)


class FlavorSpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    vcpus: int
    ram_mb: int
    disk_gb: int


class ImageSpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: uuid.UUID
    name: str
    disk_format: str = "qcow2"
    location: str | None = None
    min_disk_gb: int = 0


class InstanceSpec(BaseModel):
    """Everything an agent needs to build a server; agents never read the database."""

    model_config = ConfigDict(frozen=True)

    server_id: uuid.UUID
    name: str
    flavor: FlavorSpec
    image: ImageSpec
    metadata: dict[str, str] = {}

    @property
    def domain_name(self) -> str:
        return f"instance-{self.server_id}"


class Fault(BaseModel):
    """An asynchronous fault, stored on the server and shown while it is in ERROR."""

    model_config = ConfigDict(frozen=True)

    code: int = 500
    message: str
    details: str = ""


class ActionMessage(Message):
    """A message that serves one user action (its row in ``actions``)."""

    action_id: uuid.UUID


# --- gateway -> conductor -------------------------------------------------------------


class BuildServer(ActionMessage):
    """A new server needs a host: schedule it, claim the resources, send it to the agent."""

    type: Literal["build_server"] = "build_server"
    instance: InstanceSpec
    admin_pass: str


# --- conductor/gateway -> compute.<host> ----------------------------------------------


class SpawnServer(ActionMessage):
    type: Literal["spawn_server"] = "spawn_server"
    instance: InstanceSpec
    admin_pass: str


class DestroyServer(ActionMessage):
    type: Literal["destroy_server"] = "destroy_server"
    domain_name: str


# --- server actions (API.md §15.9-15.15) ----------------------------------------------
# Host-local actions go from the gateway straight to ``compute.<host>``; a resize goes to the
# conductor first, which places it and then drives the agents step by step, each step's
# report triggering the next command.


class ChangePassword(ActionMessage):
    type: Literal["change_password"] = "change_password"
    domain_name: str
    admin_pass: str


class RebootServer(ActionMessage):
    """SOFT (``hard`` False) or HARD; the spec lets a hard reboot recreate a lost domain."""

    type: Literal["reboot_server"] = "reboot_server"
    instance: InstanceSpec
    hard: bool


class RebuildServer(ActionMessage):
    """Wipe the server and build it again from ``instance.image``, same id and addresses."""

    type: Literal["rebuild_server"] = "rebuild_server"
    instance: InstanceSpec
    admin_pass: str


class SnapshotServer(ActionMessage):
    """Write an image of the server into the image store as ``image_id``."""

    type: Literal["snapshot_server"] = "snapshot_server"
    domain_name: str
    image_id: uuid.UUID
    disk_format: str = "qcow2"


class ResizeServer(ActionMessage):
    """A resize (or, with the same flavor, a migration) needs a destination host.

    The migration record ``migration_id`` holds the server's spec and both flavors.
    """

    type: Literal["resize_server"] = "resize_server"
    migration_id: uuid.UUID


class MigrateDisk(ActionMessage):
    """Source host, first step of a resize: power off, make the disk available on
    ``dest_host``, keep the domain for a revert."""

    type: Literal["migrate_disk"] = "migrate_disk"
    migration_id: uuid.UUID
    instance: InstanceSpec
    dest_host: str


class FinishResize(ActionMessage):
    """Destination host: run the server with ``instance.flavor`` (the new one)."""

    type: Literal["finish_resize"] = "finish_resize"
    migration_id: uuid.UUID
    instance: InstanceSpec
    source_host: str


class ConfirmResize(ActionMessage):
    """Source host: the resize is confirmed, discard the original."""

    type: Literal["confirm_resize"] = "confirm_resize"
    migration_id: uuid.UUID
    domain_name: str
    dest_host: str


class RevertResize(ActionMessage):
    """Destination host of a resize to another host: remove the resized copy."""

    type: Literal["revert_resize"] = "revert_resize"
    migration_id: uuid.UUID
    domain_name: str


class FinishRevertResize(ActionMessage):
    """Source host: run the original again with ``instance.flavor`` (the old one); ends a
    revert, or rolls back a resize that failed on its destination."""

    type: Literal["finish_revert_resize"] = "finish_revert_resize"
    migration_id: uuid.UUID
    instance: InstanceSpec


# --- compute agent -> conductor -------------------------------------------------------


class SnapshotResult(BaseModel):
    """What a snapshot produced: the image file, relative to the image store."""

    model_config = ConfigDict(frozen=True)

    image_id: uuid.UUID
    location: str | None = None
    size_bytes: int | None = None


class TaskReport(ActionMessage):
    """An agent finished (or failed) the task ``task_state`` on ``server_id``."""

    type: Literal["task_report"] = "task_report"
    host: str
    task_state: str
    success: bool
    power_state: int
    fault: Fault | None = None
    #: set by the image_snapshot task, whatever its outcome (the conductor updates the image)
    snapshot: SnapshotResult | None = None


class HostCapacity(BaseModel):
    model_config = ConfigDict(frozen=True)

    hypervisor_type: str
    hypervisor_uri: str
    vcpus: int
    ram_mb: int
    disk_gb: int


class Heartbeat(Message):
    """An agent is alive; the first one also registers the host and its capacity."""

    type: Literal["heartbeat"] = "heartbeat"
    host: str
    capacity: HostCapacity


AnyMessage = Annotated[
    BuildServer
    | SpawnServer
    | DestroyServer
    | ChangePassword
    | RebootServer
    | RebuildServer
    | SnapshotServer
    | ResizeServer
    | MigrateDisk
    | FinishResize
    | ConfirmResize
    | RevertResize
    | FinishRevertResize
    | TaskReport
    | Heartbeat,
    Field(discriminator="type"),
]

_ADAPTER: TypeAdapter[AnyMessage] = TypeAdapter(AnyMessage)


def parse(body: bytes | str) -> Message:
    """Decode a message of any known type; raises ``pydantic.ValidationError`` otherwise."""
    message: Message = _ADAPTER.validate_json(body)
    return message


def encode(message: Message) -> bytes:
    return message.model_dump_json().encode()
