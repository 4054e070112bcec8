"""The operator's commands: ``stratus host``, ``stratus flavor``, ``stratus quota`` and
``stratus status``.

They work on PostgreSQL directly (STRATUS_DATABASE_URL), like ``stratus db upgrade``: an
operator repairing a cloud must not depend on its API being up, and these are the questions the
2013 API cannot answer (flavors could not be created through it, hosts had no disabled reason).
The queries are shared/db's; where a server would be placed is asked of the conductor's own
scheduler, imported here because ``stratus/`` is where the services are composed. ``stratus
host evacuate`` is the one command that changes servers: it runs the API's own evacuate for
each server of a dead host (the gateway's compute layer, as an administrator), so it needs
the broker too, whose conductors place the servers.

Each command returns the text to print; a refusal is an ``AdminError`` whose message says why.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

import asyncpg

from api_gateway.compute.actions.evacuate import Evacuate
from api_gateway.compute.api import ComputeAPI
from api_gateway.context import RequestContext
from api_gateway.schemas.admin_actions import Evacuate as EvacuateArgs
from conductor.scheduler.scheduler import Scheduler
from shared.bus import Bus
from shared.bus.factory import create_bus
from shared.config import Settings
from shared.db import actions, evacuations, flavors, hosts, quota_overrides, quotas, servers
from shared.db.hosts import HostState, Ratios, Resources
from shared.db.pool import Conn, create_pool
from shared.db.records import HostedServer, HostOverview
from shared.errors import StratusError
from shared.states import v2_status
from stratus.runtime import require

#: the top-level ``stratus`` commands this module serves
COMMANDS = ("host", "flavor", "quota", "status")

_CONNECT_TIMEOUT_S = 5.0


class AdminError(Exception):
    """The command cannot do what it was asked; the message says why."""


# --- presentation ----------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Columns aligned on the widest cell, two spaces apart, no trailing blanks."""
    cells = [list(headers), *([str(cell) for cell in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def age(delta: timedelta | None) -> str:
    """How long ago, to the unit that matters: 42 s, 5 min, 3 h, 2 d."""
    if delta is None:
        return "never"
    seconds = max(0, int(delta.total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def _used(used: int, total: int) -> str:
    return f"{used}/{total}"


def where(url: str) -> str:
    """A service URL without its credentials, to say what was reached."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _ratios(settings: Settings) -> Ratios:
    return Ratios(
        cpu=settings.cpu_allocation_ratio,
        ram=settings.ram_allocation_ratio,
        disk=settings.disk_allocation_ratio,
    )


# --- stratus host ----------------------------------------------------------------------------


async def host_list(conn: Conn, settings: Settings) -> str:
    rows = await hosts.overview(conn, settings.host_down_after_s)
    if not rows:
        return "no compute host has reported yet"

    def enabled(row: HostOverview) -> str:
        if row.enabled:
            return "enabled"
        return f"disabled ({row.disabled_reason})" if row.disabled_reason else "disabled"

    listed = table(
        ("HOST", "STATE", "SCHEDULING", "VCPUS", "RAM MB", "DISK GB", "HEARTBEAT"),
        (
            (
                r.name,
                "up" if r.alive else "down",
                enabled(r),
                _used(r.vcpus_used, r.vcpus),
                _used(r.ram_mb_used, r.ram_mb),
                _used(r.disk_gb_used, r.disk_gb),
                f"{age(r.heartbeat_age)} ago",
            )
            for r in rows
        ),
    )
    ratios = _ratios(settings)
    return (
        f"{listed}\n(used/capacity; the scheduler allows capacity × cpu {ratios.cpu}, "
        f"ram {ratios.ram}, disk {ratios.disk})"
    )


async def host_enable(conn: Conn, name: str) -> str:
    if not await hosts.set_enabled(conn, name, True):
        raise AdminError(f"no compute host is named {name!r}")
    return f"host {name} enabled: the scheduler places servers there again"


async def host_disable(conn: Conn, name: str, reason: str | None) -> str:
    if not await hosts.set_enabled(conn, name, False, reason=reason):
        raise AdminError(f"no compute host is named {name!r}")
    why = f" ({reason})" if reason else ""
    return f"host {name} disabled{why}: its servers stay, no new ones are placed there"


@dataclass(frozen=True)
class Move:
    """Where one server of an evacuated host would go (None: nowhere has room)."""

    server: HostedServer
    destination: str | None


async def evacuate_plan(conn: Conn, settings: Settings, name: str) -> list[Move]:
    """Where each server of host ``name`` would go, largest first, each placement counted
    against the next as a real evacuation's would be; nothing is claimed or locked (the
    scheduler's ``preview``). Placement is the best host, not a random one of the best few
    as the conductor picks: so two plans agree."""
    if await hosts.get(conn, name) is None:
        raise AdminError(f"no compute host is named {name!r}")
    scheduler = Scheduler(ratios=_ratios(settings), subset_size=1)
    planned: dict[str, Resources] = {}
    moves = []
    # one snapshot for the whole plan, as one decision would see the hosts
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        for server in await servers.on_host(conn, name):
            need = Resources(server.vcpus, server.ram_mb, server.disk_gb)
            destination = await scheduler.preview(conn, need, exclude=[name], planned=planned)
            if destination is not None:
                planned[destination] = _plus(planned.get(destination), need)
            moves.append(Move(server, destination))
    return moves


def _plus(held: Resources | None, more: Resources) -> Resources:
    if held is None:
        return more
    return Resources(
        held.vcpus + more.vcpus, held.ram_mb + more.ram_mb, held.disk_gb + more.disk_gb
    )


async def host_evacuate_plan(conn: Conn, settings: Settings, name: str) -> str:
    moves = await evacuate_plan(conn, settings, name)
    if not moves:
        return f"host {name} holds no servers: nothing would move"
    placed = sum(move.destination is not None for move in moves)
    listed = table(
        ("SERVER", "NAME", "PROJECT", "VCPUS", "RAM MB", "DISK GB", "DESTINATION"),
        (
            (
                m.server.id,
                m.server.name,
                m.server.tenant_id,
                m.server.vcpus,
                m.server.ram_mb,
                m.server.disk_gb,
                m.destination or "(no valid host)",
            )
            for m in moves
        ),
    )
    return (
        f"evacuating {name} (a plan: nothing is claimed or moved)\n{listed}\n"
        f"{placed} of {len(moves)} servers have somewhere to go"
    )


#: the user an operator's evacuations are recorded as (os-instance-actions)
OPERATOR = "stratus-operator"

#: how long ``stratus host evacuate`` waits to tell where each server went
EVACUATE_WAIT_S = 30.0


@dataclass(frozen=True)
class Evacuated:
    """One server of the evacuated host, and what became of it: its evacuation's id (None:
    refused, ``outcome`` says why)."""

    server: HostedServer
    evacuation_id: uuid.UUID | None
    outcome: str


async def host_evacuate(
    pool: asyncpg.Pool, settings: Settings, bus: Bus, name: str, *, wait_s: float = EVACUATE_WAIT_S
) -> str:
    """Evacuate every server of the dead host ``name``: each one is the API's ``evacuate``
    (api_gateway/compute/actions/evacuate.py), run by the compute layer as an
    administrator's request would be, the conductors choosing each destination; then wait
    up to ``wait_s`` to tell where each went. Refused while the host is up."""
    async with pool.acquire() as conn:
        state = await hosts.state(conn, name, settings.host_down_after_s)
        if state is HostState.UNKNOWN:
            raise AdminError(f"no compute host is named {name!r}")
        if state is HostState.UP:
            raise AdminError(
                f"host {name} is up (it heartbeats, or no conductor has marked it down yet): "
                "its servers still run there, and an evacuation would run them twice; "
                "evacuate a host only once it is gone"
            )
        hosted = await servers.on_host(conn, name)
    if not hosted:
        return f"host {name} holds no servers: nothing to evacuate"
    compute = ComputeAPI(settings, pool, bus)
    done = [await _evacuate_one(compute, server) for server in hosted]
    placed = await _wait_for_places(pool, done, wait_s)
    listed = table(
        ("SERVER", "NAME", "PROJECT", "EVACUATION"),
        (
            (e.server.id, e.server.name, e.server.tenant_id, placed.get(e.server.id, e.outcome))
            for e in done
        ),
    )
    accepted = sum(e.evacuation_id is not None for e in done)
    return f"evacuating {name}\n{listed}\n{accepted} of {len(done)} servers accepted"


async def _evacuate_one(compute: ComputeAPI, server: HostedServer) -> Evacuated:
    """The API's evacuate of ``server``, as an administrator of its project asks it."""
    ctx = RequestContext(
        user_id=OPERATOR,
        project_id=server.tenant_id,
        roles=frozenset({"admin"}),
        request_id=f"req-{uuid.uuid4()}",
    )
    plan = Evacuate(EvacuateArgs())
    try:
        await compute.perform(ctx, str(server.id), plan)
    except StratusError as exc:
        return Evacuated(server, None, f"refused: {exc}")
    return Evacuated(server, plan.evacuation_id, "accepted, not placed yet")


async def _wait_for_places(
    pool: asyncpg.Pool, done: Sequence[Evacuated], wait_s: float
) -> dict[uuid.UUID, str]:
    """Where each accepted evacuation went, by server, as the conductors decided within
    ``wait_s`` (those still undecided are left out)."""
    deadline = time.monotonic() + wait_s
    told: dict[uuid.UUID, str] = {}
    waiting = [e for e in done if e.evacuation_id is not None]
    while waiting:
        for evacuated in list(waiting):
            assert evacuated.evacuation_id is not None
            record = await evacuations.get(pool, evacuated.evacuation_id)
            if record is None or record.status == evacuations.Status.ACCEPTED:
                continue
            if record.status == evacuations.Status.ERROR:
                told[evacuated.server.id] = "failed: no host can take it (see its fault)"
            else:
                told[evacuated.server.id] = f"rebuilding on {record.dest_host}"
            waiting.remove(evacuated)
        if not waiting or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.1)
    return told


# --- stratus flavor --------------------------------------------------------------------------


async def flavor_list(conn: Conn) -> str:
    rows = await flavors.list_with_usage(conn)
    return table(
        ("ID", "NAME", "RAM MB", "DISK GB", "VCPUS", "SERVERS"),
        (
            (
                r.flavor.id,
                r.flavor.name,
                r.flavor.ram_mb,
                r.flavor.disk_gb,
                r.flavor.vcpus,
                r.servers,
            )
            for r in rows
        ),
    )


@dataclass(frozen=True)
class NewFlavor:
    name: str
    ram_mb: int
    disk_gb: int
    vcpus: int
    #: default: a new UUID, as nova-manage made them
    flavor_id: str | None = None
    public: bool = True

    def check(self) -> None:
        """Refuse what the flavors table (or the API) cannot hold, with the reason."""
        if not self.public:
            raise AdminError(
                "private flavors need per-project flavor access, which this cloud does not "
                "offer: every flavor is public"
            )
        if not self.name.strip():
            raise AdminError("a flavor needs a name")
        if self.ram_mb <= 0 or self.vcpus <= 0 or self.disk_gb < 0:
            raise AdminError("--ram and --vcpus must be positive, --disk zero or more")


async def flavor_create(conn: Conn, flavor: NewFlavor) -> str:
    flavor.check()
    flavor_id = flavor.flavor_id or str(uuid.uuid4())
    try:
        await flavors.create(
            conn,
            flavor_id=flavor_id,
            name=flavor.name,
            ram_mb=flavor.ram_mb,
            disk_gb=flavor.disk_gb,
            vcpus=flavor.vcpus,
        )
    except flavors.FlavorExists:
        raise AdminError(
            f"a flavor named {flavor.name!r} exists, or one had the id {flavor_id!r} "
            "(ids of deleted flavors are not reused)"
        ) from None
    return (
        f"flavor {flavor_id} ({flavor.name}) created: {flavor.ram_mb} MB RAM, "
        f"{flavor.disk_gb} GB disk, {flavor.vcpus} vCPUs"
    )


async def flavor_delete(conn: Conn, ref: str) -> str:
    """Delete the flavor ``ref`` (id, or name): new servers and resizes can no longer use it;
    servers built from it keep running with their own copy of its sizes."""
    row = await flavors.find(conn, ref)
    if row is None or not await flavors.mark_deleted(conn, row.id):
        raise AdminError(f"no flavor has the id or name {ref!r}")
    return f"flavor {row.id} ({row.name}) deleted; servers built from it keep running"


# --- stratus quota ---------------------------------------------------------------------------


def _limit(value: int) -> str:
    return "unlimited" if value < 0 else str(value)


async def quota_show(conn: Conn, settings: Settings, project: str) -> str:
    """The project's absolute limits (``GET /limits``'s: the settings', or the project's
    os-quota-sets overrides) against what it uses now, counted the way the gateway's quota
    checks count (shared/db/quotas.py)."""
    usage = await quotas.usage(conn, project)
    overrides = await quota_overrides.for_project(conn, project)
    counted = (
        (
            "instances",
            "maxTotalInstances",
            overrides.get("instances", settings.quota_instances),
            usage.instances,
        ),
        ("cores", "maxTotalCores", overrides.get("cores", settings.quota_cores), usage.cores),
        ("ram (MB)", "maxTotalRAMSize", overrides.get("ram", settings.quota_ram_mb), usage.ram_mb),
    )
    per_request = (
        (
            "metadata items",
            "maxServerMeta",
            overrides.get("metadata_items", settings.quota_metadata_items),
        ),
        (
            "personality files",
            "maxPersonality",
            overrides.get("injected_files", settings.quota_personality),
        ),
        (
            "personality bytes",
            "maxPersonalitySize",
            overrides.get("injected_file_content_bytes", settings.quota_personality_size),
        ),
    )
    rows: list[tuple[str, str, str, object, object]] = [
        (name, api, _limit(limit), used, "-" if limit < 0 else max(limit - used, 0))
        for name, api, limit, used in counted
    ]
    rows += [(name, api, _limit(limit), "-", "-") for name, api, limit in per_request]
    header = (
        f"project {project} (limits: STRATUS_QUOTA_*, or what an administrator set for the "
        "project with os-quota-sets)"
    )
    return header + "\n" + table(("RESOURCE", "LIMIT NAME", "LIMIT", "IN USE", "LEFT"), rows)


# --- stratus status --------------------------------------------------------------------------


async def _database_summary(conn: Conn, settings: Settings) -> list[str]:
    host_rows = await hosts.overview(conn, settings.host_down_after_s)
    down = [r.name for r in host_rows if not r.alive]
    disabled = sum(not r.enabled for r in host_rows)
    hosts_line = f"{len(host_rows) - len(down)} up, {len(down)} down, {disabled} disabled"
    if down:
        hosts_line += f" (down: {', '.join(down)})"
    statuses: Counter[str] = Counter()
    for row in await servers.count_by_state(conn):
        statuses[v2_status(row.vm_state, row.task_state).value] += row.count
    by_status = ", ".join(f"{status} {count}" for status, count in sorted(statuses.items()))
    pending = await actions.pending_summary(conn)
    oldest = f", the oldest {age(pending.oldest_age)} old" if pending.count else ""
    return [
        f"hosts      {hosts_line}",
        f"servers    {sum(statuses.values())}" + (f": {by_status}" if by_status else ""),
        f"actions    {pending.count} pending{oldest}",
    ]


async def _database_status(settings: Settings) -> tuple[list[str], bool]:
    if not settings.database_url:
        return ["database   not configured (STRATUS_DATABASE_URL)"], False
    try:
        conn = await asyncpg.connect(settings.database_url, timeout=_CONNECT_TIMEOUT_S)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return [f"database   unreachable at {where(settings.database_url)}: {exc}"], False
    try:
        lines = [f"database   reachable at {where(settings.database_url)}"]
        return lines + await _database_summary(conn, settings), True
    finally:
        await conn.close()


async def _broker_status(settings: Settings) -> tuple[list[str], bool]:
    if not settings.amqp_url:
        return ["broker     not configured (STRATUS_AMQP_URL; the in-process bus)"], True
    # only when a broker is configured, as shared/bus/factory.py does: aio-pika is heavy
    from shared.bus.rabbitmq import BrokerUnreachable, dead_lettered

    try:
        dead = await dead_lettered(
            settings.amqp_url, prefix=settings.amqp_prefix, timeout_s=_CONNECT_TIMEOUT_S
        )
    except BrokerUnreachable as exc:
        return [f"broker     unreachable at {where(settings.amqp_url)}: {exc}"], False
    return [
        f"broker     reachable at {where(settings.amqp_url)}",
        f"dead       {dead} dead-lettered messages in {settings.amqp_prefix}.dead",
    ], True


async def status(settings: Settings) -> tuple[str, bool]:
    """A summary of the deployment, and whether PostgreSQL (and RabbitMQ, when configured)
    answered: ``stratus status`` exits 1 when one did not, for scripts and probes."""
    database, database_ok = await _database_status(settings)
    broker, broker_ok = await _broker_status(settings)
    return "\n".join(database + broker), database_ok and broker_ok


# --- dispatch from the command line ----------------------------------------------------------

Command = Callable[[Conn, Settings, argparse.Namespace], Awaitable[str]]

_COMMANDS: dict[tuple[str, str], Command] = {
    ("host", "list"): lambda conn, settings, args: host_list(conn, settings),
    ("host", "enable"): lambda conn, settings, args: host_enable(conn, args.name),
    ("host", "disable"): lambda conn, settings, args: host_disable(conn, args.name, args.reason),
    ("host", "evacuate-plan"): lambda conn, settings, args: host_evacuate_plan(
        conn, settings, args.name
    ),
    ("flavor", "list"): lambda conn, settings, args: flavor_list(conn),
    ("flavor", "create"): lambda conn, settings, args: flavor_create(
        conn,
        NewFlavor(
            args.name,
            args.flavor_ram_mb,
            args.flavor_disk_gb,
            args.flavor_vcpus,
            args.flavor_id,
            args.public,
        ),
    ),
    ("flavor", "delete"): lambda conn, settings, args: flavor_delete(conn, args.flavor),
    ("quota", "show"): lambda conn, settings, args: quota_show(conn, settings, args.project),
}


async def run(settings: Settings, args: argparse.Namespace) -> int:
    """Run the command ``args`` names; print its result; the exit status."""
    if args.command == "status":
        text, healthy = await status(settings)
        print(text)
        return 0 if healthy else 1
    if (args.command, args.admin_command) == ("host", "evacuate"):
        return await _evacuate(settings, args.name)
    command = _COMMANDS[(args.command, args.admin_command)]
    url = require(settings.database_url, "STRATUS_DATABASE_URL")
    try:
        conn = await asyncpg.connect(url, timeout=_CONNECT_TIMEOUT_S)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise SystemExit(f"stratus: PostgreSQL is unreachable at {where(url)}: {exc}") from exc
    try:
        print(await command(conn, settings, args))
    except AdminError as exc:
        raise SystemExit(f"stratus: {exc}") from exc
    finally:
        await conn.close()
    return 0


async def _evacuate(settings: Settings, name: str) -> int:
    """``stratus host evacuate NAME``: on PostgreSQL and the broker, whose conductors place
    the servers (the in-process bus would reach none: the broker is required)."""
    url = require(settings.database_url, "STRATUS_DATABASE_URL")
    if not settings.amqp_url:
        raise SystemExit(
            "stratus: host evacuate hands the servers to the conductors through the broker: "
            "set STRATUS_AMQP_URL (and STRATUS_AMQP_PREFIX, STRATUS_MESSAGE_KEY) as for them"
        )
    if settings.message_key is None:
        raise SystemExit(
            "stratus: host evacuate seals each rebuilt guest's password: set "
            "STRATUS_MESSAGE_KEY, the key the gateways and agents share"
        )
    try:
        pool = await create_pool(url, min_size=1, max_size=2)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise SystemExit(f"stratus: PostgreSQL is unreachable at {where(url)}: {exc}") from exc
    bus = create_bus(settings)
    try:
        await bus.connect()
        print(await host_evacuate(pool, settings, bus, name))
    except AdminError as exc:
        raise SystemExit(f"stratus: {exc}") from exc
    finally:
        await bus.close()
        await pool.close()
    return 0
