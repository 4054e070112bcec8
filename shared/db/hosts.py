"""Queries on ``compute_hosts``: registration, heartbeats, and resource claims.

Claims are made by the conductor's scheduler (``conductor/scheduler``), which owns the rule of
what fits; this module only gives resources back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from shared.db.pool import Executor
from shared.db.records import Host, HostOverview, HostService, ProjectUsage
from shared.db.sql import Params
from shared.messages import HostCapacity


@dataclass(frozen=True)
class Resources:
    vcpus: int
    ram_mb: int
    disk_gb: int


@dataclass(frozen=True)
class Ratios:
    cpu: float
    ram: float
    disk: float


class HostState(StrEnum):
    """Whether a host is gone (``state``)."""

    UNKNOWN = "unknown"  # no compute host has that name
    UP = "up"  # heartbeating, or not yet judged down by a conductor
    DOWN = "down"  # silent, and a conductor has marked it down


def fits(
    params: Params,
    need: Resources,
    ratios: Ratios,
    *,
    check_disk: bool = True,
) -> str:
    """SQL predicate on ``compute_hosts``: ``need`` fits under the allocation ratios, on top
    of the host's current usage; the disk left out with ``check_disk`` False (a live
    migration that may over-commit it)."""
    checks = [
        f"vcpus_used + {params.add(need.vcpus)} <= vcpus * {params.add(ratios.cpu)}::float8",
        f"ram_mb_used + {params.add(need.ram_mb)} <= ram_mb * {params.add(ratios.ram)}::float8",
    ]
    if check_disk:
        checks.append(
            f"disk_gb_used + {params.add(need.disk_gb)}"
            f" <= disk_gb * {params.add(ratios.disk)}::float8"
        )
    return " AND ".join(checks)


@dataclass(frozen=True)
class EverFits:
    """SQL predicate on ``compute_hosts`` (as ``h``): a live host (enabled, up, heard from
    within ``down_after_s``) big enough for ``vcpus``, ``ram_mb`` and ``disk_gb`` when empty,
    under the ``cpu``/``ram``/``disk`` ratios. Each is SQL (a placeholder, or a column of
    the statement's: the create's read takes the flavor's sizes from its row), so that the
    gateway's one-statement read and ``could_ever_fit`` follow one rule."""

    vcpus: str
    ram_mb: str
    disk_gb: str
    cpu: str
    ram: str
    disk: str
    down_after_s: str

    def predicate(self) -> str:
        return f"""h.enabled AND h.up
                   AND h.last_heartbeat >= now() - make_interval(secs => {self.down_after_s})
                   AND {self.vcpus} <= h.vcpus * {self.cpu}::float8
                   AND {self.ram_mb} <= h.ram_mb * {self.ram}::float8
                   AND {self.disk_gb} <= h.disk_gb * {self.disk}::float8"""


async def could_ever_fit(
    conn: Executor,
    need: Resources,
    ratios: Ratios,
    down_after_s: float,
    *,
    exclude: Sequence[str] = (),
) -> bool:
    """Is there a live, enabled host big enough for ``need`` when empty (other than those in
    ``exclude``)? When not, asking is pointless: the build could only end in ERROR."""
    params = Params()
    rule = EverFits(
        vcpus=params.add(need.vcpus),
        ram_mb=params.add(need.ram_mb),
        disk_gb=params.add(need.disk_gb),
        cpu=params.add(ratios.cpu),
        ram=params.add(ratios.ram),
        disk=params.add(ratios.disk),
        down_after_s=params.add(down_after_s),
    )
    others = f" AND h.name <> ALL({params.add(list(exclude))}::text[])" if exclude else ""
    return bool(
        await conn.fetchval(
            f"SELECT 1 FROM compute_hosts h WHERE {rule.predicate()}{others} LIMIT 1",
            *params.values,
        )
    )


async def heartbeat(conn: Executor, host: str, capacity: HostCapacity) -> bool:
    """Record that ``host`` is alive with ``capacity``; True when it was down or new."""
    was_up: bool | None = await conn.fetchval(
        """WITH old AS (SELECT up FROM compute_hosts WHERE name = $1)
           INSERT INTO compute_hosts AS h (name, hypervisor_type, hypervisor_uri, vcpus, ram_mb,
                                           disk_gb, last_heartbeat, up)
           VALUES ($1, $2, $3, $4, $5, $6, now(), true)
           ON CONFLICT (name) DO UPDATE
              SET hypervisor_type = EXCLUDED.hypervisor_type,
                  hypervisor_uri = EXCLUDED.hypervisor_uri,
                  vcpus = EXCLUDED.vcpus, ram_mb = EXCLUDED.ram_mb, disk_gb = EXCLUDED.disk_gb,
                  last_heartbeat = now(), up = true
           RETURNING (SELECT up FROM old)""",
        host,
        capacity.hypervisor_type,
        capacity.hypervisor_uri,
        capacity.vcpus,
        capacity.ram_mb,
        capacity.disk_gb,
    )
    return not was_up


async def mark_down_stale(conn: Executor, older_than_s: float) -> list[str]:
    """Mark hosts whose last heartbeat is older than ``older_than_s`` down; return their names."""
    rows = await conn.fetch(
        """UPDATE compute_hosts SET up = false
            WHERE up AND last_heartbeat < now() - make_interval(secs => $1)
        RETURNING name""",
        older_than_s,
    )
    return [r["name"] for r in rows]


async def is_alive(conn: Executor, host: str, older_than_s: float) -> bool:
    return bool(
        await conn.fetchval(
            """SELECT 1 FROM compute_hosts
                WHERE name = $1 AND last_heartbeat >= now() - make_interval(secs => $2)""",
            host,
            older_than_s,
        )
    )


async def state(conn: Executor, host: str, down_after_s: float) -> HostState:
    """Whether ``host`` is gone. Down takes both: no heartbeat for ``down_after_s`` *and*
    marked down by a conductor, which marks hosts down only when it could have heard them
    (conductor/hearing.py). A host that is merely unheard during a broker outage is still
    running its servers: evacuating them then would run each twice."""
    row = await conn.fetchrow(
        """SELECT up, last_heartbeat >= now() - make_interval(secs => $2) AS heard
             FROM compute_hosts WHERE name = $1""",
        host,
        down_after_s,
    )
    if row is None:
        return HostState.UNKNOWN
    if row["up"] or row["heard"]:
        return HostState.UP
    return HostState.DOWN


async def count_up(conn: Executor, names: Sequence[str]) -> int:
    """How many of the hosts ``names`` are registered and up."""
    count: int = await conn.fetchval(
        "SELECT count(*) FROM compute_hosts WHERE name = ANY($1::text[]) AND up", list(names)
    )
    return count


async def release(conn: Executor, host: str, held: Resources) -> None:
    """Give back what a server held on ``host`` (its claim)."""
    await conn.execute(
        """UPDATE compute_hosts
              SET vcpus_used = GREATEST(vcpus_used - $2, 0),
                  ram_mb_used = GREATEST(ram_mb_used - $3, 0),
                  disk_gb_used = GREATEST(disk_gb_used - $4, 0)
            WHERE name = $1""",
        host,
        held.vcpus,
        held.ram_mb,
        held.disk_gb,
    )


# --- the os-hosts extension (administrators) ------------------------------------------------


async def list_all(conn: Executor) -> list[Host]:
    """Every compute host, by name."""
    rows = await conn.fetch(
        "SELECT name, enabled, up, vcpus, ram_mb, disk_gb, vcpus_used, ram_mb_used,"
        " disk_gb_used FROM compute_hosts ORDER BY name"
    )
    return [Host.from_record(r) for r in rows]


async def get(conn: Executor, host: str) -> Host | None:
    row = await conn.fetchrow(
        "SELECT name, enabled, up, vcpus, ram_mb, disk_gb, vcpus_used, ram_mb_used,"
        " disk_gb_used FROM compute_hosts WHERE name = $1",
        host,
    )
    return None if row is None else Host.from_record(row)


async def set_enabled(
    conn: Executor, host: str, enabled: bool, *, reason: str | None = None
) -> bool:
    """Let the scheduler place servers on ``host`` or not, saying why it is disabled
    (``reason``; enabling forgets it); False when there is no such host."""
    done = await conn.execute(
        "UPDATE compute_hosts SET enabled = $2,"
        " disabled_reason = CASE WHEN $2 THEN NULL ELSE $3 END WHERE name = $1",
        host,
        enabled,
        reason,
    )
    return bool(done != "UPDATE 0")


async def usage_by_project(conn: Executor, host: str) -> list[ProjectUsage]:
    """What each project's (live) servers on ``host`` hold."""
    rows = await conn.fetch(
        "SELECT tenant_id, sum(vcpus)::int AS vcpus, sum(ram_mb)::int AS ram_mb,"
        " sum(disk_gb)::int AS disk_gb FROM servers"
        " WHERE host = $1 AND deleted_at IS NULL GROUP BY tenant_id ORDER BY tenant_id",
        host,
    )
    return [ProjectUsage.from_record(r) for r in rows]


# --- the operator's view (stratus host list, stratus status) ---------------------------------


async def overview(conn: Executor, down_after_s: float) -> list[HostOverview]:
    """Every compute host with its capacity, usage, why it is disabled and how old its last
    heartbeat is; ``alive``: up, and a heartbeat within ``down_after_s`` (the scheduler
    places on any host not marked down; this shows a silence no conductor judged yet too)."""
    rows = await conn.fetch(
        "SELECT name, enabled, disabled_reason, vcpus, ram_mb, disk_gb, vcpus_used,"
        " ram_mb_used, disk_gb_used, now() - last_heartbeat AS heartbeat_age,"
        " (up AND last_heartbeat >= now() - make_interval(secs => $1)) AS alive"
        " FROM compute_hosts ORDER BY name",
        down_after_s,
    )
    return [HostOverview.from_record(r) for r in rows]


async def services(conn: Executor, down_after_s: float) -> list[HostService]:
    """Every compute host as os-services lists it: its service id, whether it is enabled (and
    why not), its last heartbeat, and whether it is alive by the scheduler's own test (up,
    and a heartbeat within ``down_after_s``)."""
    rows = await conn.fetch(
        "SELECT service_id, name, enabled, disabled_reason, last_heartbeat,"
        " (up AND last_heartbeat >= now() - make_interval(secs => $1)) AS alive"
        " FROM compute_hosts ORDER BY name",
        down_after_s,
    )
    return [HostService.from_record(r) for r in rows]
