"""Absolute limits enforced as quotas (guide 1.6.2): 413 overLimit with ``Retry-After: 0``.

Per project: servers (``maxTotalInstances``), their vCPUs (``maxTotalCores``) and RAM
(``maxTotalRAMSize``), counted from the live servers in the database. Per request: metadata
items (``maxServerMeta``/``maxImageMeta``), personality files (``maxPersonality``) and their
decoded size (``maxPersonalitySize``). A negative quota is unlimited, as in the reference
implementation. Messages are the reference implementation's, so clients that show them read
the same thing.

Per-project quotas an administrator set (nova's os-quota-sets, ``quota_overrides``) replace
the settings' defaults for instances, cores, RAM (creates, resizes, ``GET /limits``), key
pairs (a user's key pairs are counted against the quota of the project the request acts in),
and the per-request limits: metadata items (server and image metadata, as nova 2013.1
applied ``metadata_items`` to both), personality files, their size and path length
(``injected_files``, ``injected_file_content_bytes``, ``injected_file_path_bytes``). The
per-request checks take the project's quota set (``project_quotas``), so a create reads it
once for both kinds of check.

For other engineers: ``check_metadata_items`` before writing metadata, and
``check_resize`` inside the transaction that records a resize.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence

from api_gateway.http.faults import OverLimit
from api_gateway.schemas.servers import PersonalityFile, ServerCreate
from shared.config import Settings
from shared.db import quota_overrides
from shared.db import quotas as db
from shared.db.pool import Conn, Executor
from shared.db.quotas import Usage

#: Room for "any number" of servers, where no quota limits them.
MAX_SERVERS = 2**31 - 1

#: The per-project resources, in the order a violation message names them.
_RESOURCES = ("instances", "cores", "ram")


def _exceeded(message: str) -> OverLimit:
    # retrying does not help until something is freed; the reference implementation said 0
    return OverLimit(message, headers={"Retry-After": "0"})


def _limited(quota: int) -> bool:
    return quota >= 0


def check_metadata_items(quotas: Mapping[str, int], count: int) -> None:
    """413 if a server or image would hold more metadata items than the project's
    ``metadata_items`` quota (``maxServerMeta``/``maxImageMeta``)."""
    quota = quotas["metadata_items"]
    if _limited(quota) and count > quota:
        raise _exceeded(f"Maximum number of metadata items exceeds {quota}")


def _decoded_size(file: PersonalityFile) -> int:
    return len(base64.b64decode("".join(file.contents.split())))


def _over(quota: int, value: int) -> bool:
    return _limited(quota) and value > quota


def check_personality(quotas: Mapping[str, int], files: Sequence[PersonalityFile]) -> None:
    """413 for more files than the project's ``injected_files`` (``maxPersonality``), a path
    longer than ``injected_file_path_bytes`` or contents larger than
    ``injected_file_content_bytes`` (``maxPersonalitySize``), in nova 2013.1's order and
    words. A path is measured in characters, as nova measured it."""
    if _over(quotas["injected_files"], len(files)):
        raise _exceeded("Personality file limit exceeded")
    if _over(quotas["injected_file_path_bytes"], max((len(f.path) for f in files), default=0)):
        raise _exceeded("Personality file path too long")
    size_quota = quotas["injected_file_content_bytes"]
    if _limited(size_quota) and any(_decoded_size(f) > size_quota for f in files):
        raise _exceeded("Personality file content too long")


def check_create_request(quotas: Mapping[str, int], request: ServerCreate) -> None:
    """The per-request absolute limits of a create, against the project's quotas."""
    check_metadata_items(quotas, len(request.metadata))
    check_personality(quotas, request.personality)


#: nova 2013.1's defaults of the quotas no setting holds: those of the resources Stratus
#: does not serve (os-quota-sets shows them) and the personality path length (enforced; a
#: path is at most 255 characters anyway, the request schema's bound).
_NOT_SERVED = {
    "floating_ips": 10,
    "fixed_ips": -1,
    "injected_file_path_bytes": 255,
    "security_groups": 10,
    "security_group_rules": 20,
}


def defaults(settings: Settings) -> dict[str, int]:
    """Every quota nova 2013.1 answered in a quota set (its keys), at the defaults."""
    return {
        "instances": settings.quota_instances,
        "cores": settings.quota_cores,
        "ram": settings.quota_ram_mb,
        "floating_ips": _NOT_SERVED["floating_ips"],
        "fixed_ips": _NOT_SERVED["fixed_ips"],
        "metadata_items": settings.quota_metadata_items,
        "injected_files": settings.quota_personality,
        "injected_file_content_bytes": settings.quota_personality_size,
        "injected_file_path_bytes": _NOT_SERVED["injected_file_path_bytes"],
        "key_pairs": settings.quota_keypairs,
        "security_groups": _NOT_SERVED["security_groups"],
        "security_group_rules": _NOT_SERVED["security_group_rules"],
    }


#: the keys of a quota set
RESOURCES = (
    "instances",
    "cores",
    "ram",
    "floating_ips",
    "fixed_ips",
    "metadata_items",
    "injected_files",
    "injected_file_content_bytes",
    "injected_file_path_bytes",
    "key_pairs",
    "security_groups",
    "security_group_rules",
)


async def project_quotas(conn: Executor, settings: Settings, project_id: str) -> dict[str, int]:
    """The project's quotas: the defaults, with what an administrator set for it."""
    return defaults(settings) | await quota_overrides.for_project(conn, project_id)


def _any_limited(quotas: Mapping[str, int], requested: Mapping[str, int]) -> bool:
    """Is any resource of ``requested`` under a quota? When none is, there is nothing to
    count: no project lock (which makes a project's creates take turns) and no count of
    its servers (which grows with the project)."""
    return any(_limited(quotas[resource]) for resource in requested)


def _in_use(used: Usage) -> dict[str, int]:
    return {"instances": used.instances, "cores": used.cores, "ram": used.ram_mb}


def _enforce(quotas: Mapping[str, int], used: Usage, requested: Mapping[str, int]) -> None:
    """413 naming every resource ``requested`` would take past its quota (the message
    details the first, as the reference implementation's does)."""
    in_use = _in_use(used)
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
    conn: Conn,
    settings: Settings,
    project_id: str,
    *,
    vcpus: int,
    ram_mb: int,
    counts: tuple[int, int] = (1, 1),
    known: Mapping[str, int] | None = None,
) -> int:
    """How many servers of this size to create for a request of ``counts`` (fewest, most):
    the most when the project has room for them, else as many as it has room for if that is
    at least the fewest (nova's multiple create), else 413 for the most.

    Call it inside the transaction that inserts the servers, before inserting them: it holds
    the project's quota lock until that transaction ends, so concurrent creates are counted
    one after the other and cannot together exceed the quota (when no quota applies, there
    is nothing to count and no lock is taken). ``known``: the project's quotas when the
    caller has read them already (a create does, for its per-request limits), to save a query.
    """
    fewest, most = counts
    requested = _servers_of(most, vcpus, ram_mb)
    quotas = known if known is not None else await project_quotas(conn, settings, project_id)
    if not limits_servers(quotas, vcpus=vcpus, ram_mb=ram_mb):
        return most
    await db.lock_project(conn, project_id)
    used = await db.usage(conn, project_id)
    room = _room_for(quotas, used, _servers_of(1, vcpus, ram_mb))
    if room >= most:
        return most
    if room < fewest:
        _enforce(quotas, used, requested)
    return room


def limits_servers(quotas: Mapping[str, int], *, vcpus: int, ram_mb: int) -> bool:
    """Does any quota limit how many servers of this size the project may have? When none
    does, a create has nothing to count (``check_instances`` returns the most at once) and
    needs no transaction of its own: its insert is a single statement."""
    return _any_limited(quotas, _servers_of(1, vcpus, ram_mb))


def _servers_of(count: int, vcpus: int, ram_mb: int) -> dict[str, int]:
    return {"instances": count, "cores": vcpus * count, "ram": ram_mb * count}


def _room_for(quotas: Mapping[str, int], used: Usage, each: Mapping[str, int]) -> int:
    """How many more servers taking ``each`` the project's quotas leave room for."""
    in_use = _in_use(used)
    rooms = [
        max(0, quotas[resource] - in_use[resource]) // each[resource]
        for resource in _RESOURCES
        if each[resource] > 0 and _limited(quotas[resource])
    ]
    return min(rooms, default=MAX_SERVERS)


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
    await _check(conn, settings, project_id, {"cores": vcpus_delta, "ram": ram_delta})


async def _check(
    conn: Conn, settings: Settings, project_id: str, requested: dict[str, int]
) -> None:
    """413 unless ``requested`` fits the project's quotas, counted under the project's quota
    lock (taken only when some quota applies: then there is something to count)."""
    quotas = await project_quotas(conn, settings, project_id)
    if not _any_limited(quotas, requested):
        return
    await db.lock_project(conn, project_id)
    used = await db.usage(conn, project_id)
    _enforce(quotas, used, requested)


async def usage(conn: Executor, project_id: str) -> Usage:
    """What the project uses now (no lock: for display, e.g. ``GET /limits``)."""
    return await db.usage(conn, project_id)
