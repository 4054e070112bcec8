"""The refusals shared by the compute API's writes: each raises the domain error the API
answers with (shared/errors.py; translated into a fault at the HTTP edge)."""

from __future__ import annotations

import uuid

from api_gateway.compute.metadata import MetadataEdit
from shared.config import Settings
from shared.db import hosts
from shared.db.hosts import Ratios, Resources
from shared.db.pool import Conn
from shared.db.records import Flavor, Image, LockedServer, Server
from shared.errors import (
    BackupOrResizeInProgress,
    BuildInProgress,
    CapacityUnavailable,
    Conflict,
    Invalid,
    NotFound,
)
from shared.states import TaskState, VmState, allowed


def parse_uuid(value: str, what: str) -> uuid.UUID:
    """The id a URL names; 404 for one that is not a UUID (no such thing can exist)."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"{what} could not be found.") from None


def marker_uuid(marker: str) -> uuid.UUID:
    """A list's marker; 400 for one that is not a UUID, as for one that names nothing."""
    try:
        return uuid.UUID(marker)
    except ValueError:
        raise Invalid(f"marker [{marker}] not found") from None


_BUSY_WITH_IMAGE_OR_RESIZE = {
    TaskState.IMAGE_SNAPSHOT,
    TaskState.IMAGE_BACKUP,
    TaskState.RESIZE_PREP,
    TaskState.RESIZE_MIGRATING,
    TaskState.RESIZE_MIGRATED,
    TaskState.RESIZE_FINISH,
    TaskState.RESIZE_REVERTING,
    TaskState.RESIZE_CONFIRMING,
}


def check_allowed(row: Server | LockedServer, action: str) -> None:
    """409 unless ``action`` may start in the server's current state (shared/states.py),
    named as the guide names it: buildInProgress while building, backupOrResizeInProgress
    while an image or a resize is under way, conflictingRequest otherwise."""
    if allowed(action, row.vm_state, row.task_state):
        return
    blocker = (
        f"task_state {row.task_state}" if row.task_state is not None else f"vm_state {row.vm_state}"
    )
    message = f"Cannot '{action}' while instance is in {blocker}"
    if row.vm_state == VmState.BUILDING:
        raise BuildInProgress(message)
    if row.task_state in _BUSY_WITH_IMAGE_OR_RESIZE or row.vm_state == VmState.RESIZED:
        raise BackupOrResizeInProgress(message)
    raise Conflict(message)


def check_on_a_host(row: Server | LockedServer, operation: str) -> None:
    """409 for a server whose build never reached a host (ERROR before scheduling): it has
    nothing an agent could act on."""
    if row.host is None:
        raise Conflict(f"Cannot '{operation}' an instance that is on no host")


def check_fits(row: Flavor | LockedServer | Server, image: Image) -> None:
    """400 when the server's (or a new server's) flavor is too small for ``image``, or when a
    new server's flavor is disabled (OS-FLV-DISABLED; nova's answer, before the sizes)."""
    if isinstance(row, Flavor) and row.disabled:
        raise Invalid(f"Instance type {row.id} could not be found.")
    if row.ram_mb < image.min_ram_mb:
        raise Invalid("Flavor's memory is too small for requested image.")
    if row.disk_gb < image.min_disk_gb:
        raise Invalid("Flavor's disk is too small for requested image.")


def ratios(settings: Settings) -> Ratios:
    """How far the hosts' resources may be over-committed (STRATUS_*_ALLOCATION_RATIO)."""
    return Ratios(
        settings.cpu_allocation_ratio,
        settings.ram_allocation_ratio,
        settings.disk_allocation_ratio,
    )


async def check_capacity(conn: Conn, settings: Settings, need: Resources, flavor_id: str) -> None:
    """503 serverCapacityUnavailable when no live host could hold ``flavor`` even empty
    (the guide's answer to a build that can never be placed); a cloud that is merely full
    now still accepts it, and the build fails later with a fault if it stays full. Checked
    after the quotas: what the project may have comes before what the cloud can give."""
    if not await hosts.could_ever_fit(conn, need, ratios(settings), settings.host_down_after_s):
        raise CapacityUnavailable(f"No compute host can take flavor {flavor_id} now.")


def check_could_fit(fits: bool | None, flavor_id: str) -> None:
    """``check_capacity`` on what a create read already (shared/db/creates.py): whether a
    live host could take the flavor even empty."""
    if not fits:
        raise CapacityUnavailable(f"No compute host can take flavor {flavor_id} now.")


#: vm_states in which a server's metadata may change (docs/architecture.md, *State*); any
#: task may run.
_METADATA_WRITABLE = frozenset({VmState.ACTIVE, VmState.PAUSED, VmState.SUSPENDED, VmState.STOPPED})


def check_metadata_writable(row: Server | LockedServer, edit: MetadataEdit) -> None:
    """409 when the server's state forbids changing its metadata now."""
    verb = "delete metadata" if not edit.grows else "update metadata"
    if row.vm_state not in _METADATA_WRITABLE:
        message = f"Cannot '{verb}' while instance is in vm_state {row.vm_state}"
        if row.vm_state == VmState.BUILDING:
            raise BuildInProgress(message)
        raise Conflict(message)
