"""Absolute limits enforced as quotas (guide 1.6.2): 413 overLimit with ``Retry-After: 0``.

Per project: servers (``maxTotalInstances``), their vCPUs (``maxTotalCores``) and RAM
(``maxTotalRAMSize``), counted from the live servers in the database. Per request: metadata
items (``maxServerMeta``/``maxImageMeta``), personality files (``maxPersonality``) and their
decoded size (``maxPersonalitySize``). A negative quota is unlimited, as in the reference
implementation. Messages are the reference implementation's, so clients that show them read
the same thing.

For other engineers: ``check_metadata_items`` before writing metadata, and
``check_resize`` inside the transaction that records a resize.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence

from api_gateway.http.faults import OverLimit
from api_gateway.schemas.servers import PersonalityFile, ServerCreate
from shared.config import Settings
from shared.db import quotas as db
from shared.db.pool import Conn, Executor
from shared.db.quotas import Usage

#: The per-project resources, in the order a violation message names them.
_RESOURCES = ("instances", "cores", "ram")


def _exceeded(message: str) -> OverLimit:
    # retrying does not help until something is freed; the reference implementation said 0
    return OverLimit(message, headers={"Retry-After": "0"})


def _limited(quota: int) -> bool:
    return quota >= 0


def check_metadata_items(settings: Settings, count: int) -> None:
    """413 if a server or image would hold more than ``maxServerMeta`` metadata items."""
    quota = settings.quota_metadata_items
    if _limited(quota) and count > quota:
        raise _exceeded(f"Maximum number of metadata items exceeds {quota}")


def _decoded_size(file: PersonalityFile) -> int:
    return len(base64.b64decode("".join(file.contents.split())))


def check_personality(settings: Settings, files: Sequence[PersonalityFile]) -> None:
    """413 for more files than ``maxPersonality`` or one larger than ``maxPersonalitySize``."""
    if _limited(settings.quota_personality) and len(files) > settings.quota_personality:
        raise _exceeded("Personality file limit exceeded")
    size_quota = settings.quota_personality_size
    if _limited(size_quota) and any(_decoded_size(f) > size_quota for f in files):
        raise _exceeded("Personality file content too long")


def check_create_request(settings: Settings, request: ServerCreate) -> None:
    """The per-request absolute limits of a create (no database needed)."""
    check_metadata_items(settings, len(request.metadata))
    check_personality(settings, request.personality)


def _quotas(settings: Settings) -> dict[str, int]:
    return {
        "instances": settings.quota_instances,
        "cores": settings.quota_cores,
        "ram": settings.quota_ram_mb,
    }


def _any_limited(settings: Settings, requested: Mapping[str, int]) -> bool:
    """Is any resource of ``requested`` under a quota? When none is, there is nothing to
    count: no project lock (which makes a project's creates take turns) and no count of
    its servers (which grows with the project)."""
    quotas = _quotas(settings)
    return any(_limited(quotas[resource]) for resource in requested)


def _enforce(settings: Settings, used: Usage, requested: Mapping[str, int]) -> None:
    """413 naming every resource ``requested`` would take past its quota (the message
    details the first, as the reference implementation's does)."""
    quotas = _quotas(settings)
    in_use = {"instances": used.instances, "cores": used.cores, "ram": used.ram_mb}
    overs = [
        resource
        for resource in _RESOURCES
        if requested.get(resource, 0) > 0
        and _limited(quotas[resource])
        and in_use[resource] + requested[resource] > quotas[resource]
    ]
    if overs:
        first = overs[0]
        raise _exceeded(
            f"Quota exceeded for {','.join(overs)}: Requested {requested[first]}, but already "
            f"used {in_use[first]} of {quotas[first]} {first}"
        )


async def check_instances(
    conn: Conn, settings: Settings, project_id: str, *, vcpus: int, ram_mb: int, count: int = 1
) -> None:
    """413 unless the project has room for ``count`` more servers of this size.

    Call it inside the transaction that inserts the servers, before inserting them: it holds
    the project's quota lock until that transaction ends, so concurrent creates are counted
    one after the other and cannot together exceed the quota (when no quota applies, there
    is nothing to count and no lock is taken).
    """
    requested = {"instances": count, "cores": vcpus * count, "ram": ram_mb * count}
    if not _any_limited(settings, requested):
        return
    await db.lock_project(conn, project_id)
    used = await db.usage(conn, project_id)
    _enforce(settings, used, requested)


async def check_resize(
    conn: Conn, settings: Settings, project_id: str, vcpus_delta: int, ram_delta: int
) -> None:
    """413 unless the project has room for a server to grow by these deltas (shrinking
    always fits).

    Call it inside the transaction that starts the resize. Usage is counted from the live
    servers' ``vcpus``/``ram_mb`` columns, so the growth must become visible there (or in
    whatever the usage count is extended to read) within the same transaction; otherwise a
    second concurrent resize is checked against the old sizes.
    """
    requested = {"cores": vcpus_delta, "ram": ram_delta}
    if not _any_limited(settings, requested):
        return
    await db.lock_project(conn, project_id)
    used = await db.usage(conn, project_id)
    _enforce(settings, used, requested)


async def usage(conn: Executor, project_id: str) -> Usage:
    """What the project uses now (no lock: for display, e.g. ``GET /limits``)."""
    return await db.usage(conn, project_id)
