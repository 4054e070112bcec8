"""The SQL of placing a server: which hosts can take it, which is best, and the claim.

A decision is one statement, with no host row travelling to the conductor: filters are
predicates on ``compute_hosts`` (each names one reason a host cannot take a server), weighers
an ORDER BY expression (higher is better), and the claim an UPDATE of the row the query chose
(for a build, the server's assignment to it too, and its addresses: ``ipam.PlacementTake``).
At 1,000 hosts PostgreSQL reads ``compute_hosts`` sequentially (15 pages): every host passes
``enabled AND up``, and the capacity predicates compare a row's columns with each other,
which no B-tree narrows; the whole decision takes under a millisecond inside PostgreSQL
(bench/scale.py).

Concurrent conductors must never overcommit a host, and should not queue behind each other
for the same best host either. The chosen row is locked ``FOR UPDATE SKIP LOCKED``, and
that row only: a conductor deciding while another holds the best host's row takes another
of the best instead of waiting (``_pick_ctes``); and the UPDATE repeats the capacity condition
on the row it locked, so whatever happened since the query's snapshot, usage never exceeds
capacity * ratio. When every fitting host is locked by someone else, a claim without
``skip_locked`` waits for the locks, one row at a time (the caller decides when:
conductor/scheduler/scheduler.py).

``ranked`` is the read-only heart of every statement here. A claim locks and updates the best
of its hosts; ``best_host`` only reads it, over the hosts' usage plus what a plan has placed
already, so a dry run (``stratus host evacuate-plan``) follows the very rules a claim does
while writing and locking nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import asyncpg

from shared.db import hosts, ipam
from shared.db.hosts import Ratios, Resources
from shared.db.pool import Executor
from shared.db.sql import Params
from shared.networks import Network

# --- filters and weighers ----------------------------------------------------------------------


class HostFilter(Protocol):
    def predicate(self, params: Params) -> str: ...


@dataclass(frozen=True)
class AliveFilter:
    """Only enabled hosts that are up: not marked down by a conductor. Their heartbeats'
    age alone is no judge: during a broker outage every host falls silent at once while it
    runs on, and only a conductor that could have heard them marks them down
    (conductor/hearing.py), a third of STRATUS_HOST_DOWN_AFTER_S after the window. Judged on
    age, builds right after a broker restart found no host at all."""

    def predicate(self, params: Params) -> str:
        return "enabled AND up"


@dataclass(frozen=True)
class CapacityFilter:
    """Only hosts with room for ``need`` under the allocation ratios (CPU, RAM and disk)."""

    need: Resources
    ratios: Ratios
    #: False: the disk may be over-committed (a live migration that says so)
    check_disk: bool = True

    def predicate(self, params: Params) -> str:
        return hosts.fits(params, self.need, self.ratios, check_disk=self.check_disk)


@dataclass(frozen=True)
class SameHypervisorFilter:
    """Only hosts of ``host``'s hypervisor type (a live migration's source: a guest cannot
    move between hypervisors); any host when ``host`` is not registered (nothing to match)."""

    host: str

    def predicate(self, params: Params) -> str:
        return (
            "hypervisor_type = COALESCE((SELECT s.hypervisor_type FROM compute_hosts s"
            f" WHERE s.name = {params.add(self.host)}), hypervisor_type)"
        )


@dataclass(frozen=True)
class ExcludeHostsFilter:
    """Not these hosts (the one a server is leaving, hosts that already failed it)."""

    hosts: Sequence[str]

    def predicate(self, params: Params) -> str:
        return f"name <> ALL({params.add(list(self.hosts))}::text[])"


@dataclass(frozen=True)
class OnlyHostFilter:
    """Only ``host`` (the destination a request names, which must still pass every other
    filter: an administrator's choice is checked, not forced)."""

    host: str

    def predicate(self, params: Params) -> str:
        return f"name = {params.add(self.host)}"


class HostWeigher(Protocol):
    def expression(self, params: Params) -> str: ...


@dataclass(frozen=True)
class FreeRamWeigher:
    """Prefer the host with the most free RAM, which spreads servers across hosts.

    A negative ``multiplier`` stacks them instead (fill one host before the next).
    """

    ram_ratio: float
    multiplier: float = 1.0

    def expression(self, params: Params) -> str:
        return (
            f"{params.add(self.multiplier)}::float8 * "
            f"(ram_mb * {params.add(self.ram_ratio)}::float8 - ram_mb_used)"
        )


# --- a decision --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """One placement to decide: ``need`` claimed on one of the ``subset_size`` best hosts
    that pass every filter, by the weighers' order."""

    need: Resources
    ratios: Ratios
    filters: Sequence[HostFilter]
    weighers: Sequence[HostWeigher]
    subset_size: int = 1


def _where_and_weight(params: Params, decision: Decision) -> tuple[str, str]:
    """The filters' conjunction and the weighers' sum (higher is better)."""
    where = " AND ".join(f"({f.predicate(params)})" for f in decision.filters)
    weight = " + ".join(w.expression(params) for w in decision.weighers)
    return where, weight


def ranked(params: Params, decision: Decision, *, among: str = "compute_hosts") -> str:
    """SELECT of the fitting hosts' names, best first (no LIMIT, no locking), from ``among``:
    ``compute_hosts`` or a FROM item with its columns."""
    where, weight = _where_and_weight(params, decision)
    return f"SELECT name FROM {among} WHERE {where} ORDER BY {weight} DESC, name"


def _pick_ctes(params: Params, decision: Decision, *, skip_locked: bool) -> str:
    """CTEs ending in ``best``: the one host a claim takes, locked (no row: none).

    Skipping locked hosts: ``top``, the ``subset_size`` best fitting hosts, read without a
    lock; ``pick`` locks one of them at random that no other decision holds; only when all
    of them are held, ``after_top`` locks the best fitting host that nobody holds. One row is
    locked: a claim that locked its whole subset (``LIMIT subset FOR UPDATE SKIP LOCKED``,
    then a random one of them) held every host of a small cloud while it used one, and the
    decisions of a conductor's builds took turns on them (each found nothing free and
    waited). The filters are on the locking scans too, so a host filled since the
    statement's snapshot is passed over. (A ranking of every fitting host with
    ``row_number()``, locked in one scan, did the same in one CTE and cost twice the old
    decision at 1,000 hosts: two full sorts.)

    Waiting: the best fitting host, one row at a time (two waiters never hold rows the other
    wants); when the lock comes the filters are checked again on the row as it is now, and a
    host that no longer fits is passed over for the next best."""
    if not skip_locked:
        return f"best AS MATERIALIZED ({ranked(params, decision)} LIMIT 1 FOR UPDATE)"
    where, weight = _where_and_weight(params, decision)
    subset = params.add(decision.subset_size)
    return f"""top AS MATERIALIZED (
                SELECT name FROM compute_hosts WHERE {where}
                 ORDER BY {weight} DESC, name LIMIT {subset}),
             pick AS MATERIALIZED (
                SELECT name FROM compute_hosts
                 WHERE name IN (SELECT name FROM top) AND {where}
                 ORDER BY random() LIMIT 1 FOR UPDATE SKIP LOCKED),
             after_top AS MATERIALIZED (
                SELECT name FROM compute_hosts
                 WHERE NOT EXISTS (SELECT 1 FROM pick) AND {where}
                 ORDER BY {weight} DESC, name LIMIT 1 FOR UPDATE SKIP LOCKED),
             best AS (SELECT name FROM pick UNION ALL SELECT name FROM after_top)"""


def _claim_ctes(
    params: Params, decision: Decision, *, skip_locked: bool, only_with: str = ""
) -> str:
    """The CTEs of a claim: ``_pick_ctes``' (``best``: the host locked) and ``claimed``
    (``need`` added to its usage if it still fits, RETURNING its name); ``only_with``: a CTE
    that must have a row for the claim to happen (the server still waiting for a host)."""
    need = decision.need
    pick = _pick_ctes(params, decision, skip_locked=skip_locked)
    fits = CapacityFilter(need, decision.ratios).predicate(params)
    also = f", {only_with}" if only_with else ""
    return f"""{pick},
             claimed AS (
                UPDATE compute_hosts h
                   SET vcpus_used = vcpus_used + {params.add(need.vcpus)},
                       ram_mb_used = ram_mb_used + {params.add(need.ram_mb)},
                       disk_gb_used = disk_gb_used + {params.add(need.disk_gb)}
                  FROM best{also}
                 WHERE h.name = best.name AND {fits}
             RETURNING h.name)"""


def claim_statement(decision: Decision, *, skip_locked: bool) -> tuple[str, list[object]]:
    """A claim alone: the name of the host ``need`` was added to, or no row."""
    params = Params()
    ctes = _claim_ctes(params, decision, skip_locked=skip_locked)
    return f"WITH {ctes} SELECT name FROM claimed", params.values


def placement_statement(
    server_id: uuid.UUID,
    decision: Decision,
    *,
    skip_locked: bool,
    networks: Sequence[Network] = (),
) -> tuple[str, list[object]]:
    """A whole decision for a server waiting in ``scheduling``, in one statement: lock the
    server's row, claim ``need`` on a host, assign the server to it (``spawning``).

    One row: ``waiting`` (was the server still waiting for a host of ``need``: not, when it
    was deleted or placed meanwhile, or asks for other resources, and then nothing is
    claimed), ``host`` (NULL: no host had room), and the live row as the statement found it
    (``found`` False: there is none): its ``task_state``, ``placed_on`` (its host) and
    resources. Those are what a build checked before placing (a read of its own, a round
    trip of every build): a server no longer waiting is either a build delivered again
    (``spawning`` on a host: its spawn is sent again, nothing claimed twice) or over.

    With ``networks`` (a build's, sorted by label: one order of locks), a server placed now
    also takes an address on each, as ``ipam.take_for_build`` would next: ``_takes``.

    The live row is read by its id alone (``by_id``, materialized so the liveness test stays
    outside): asked for ``id = $1 AND deleted_at IS NULL``, PostgreSQL on a young database
    (statistics of an empty table, every index costed alike) read it through ``servers_host``,
    a partial index on ``deleted_at IS NULL``, filtering on the id: half the table a build."""
    sql, values, _ = _placement(server_id, decision, skip_locked=skip_locked, networks=networks)
    return sql, values


def _placement(
    server_id: uuid.UUID, decision: Decision, *, skip_locked: bool, networks: Sequence[Network]
) -> tuple[str, list[object], list[ipam.PlacementTake]]:
    """``placement_statement`` and the address takes it folds in, to read its row with."""
    params = Params(server_id)
    need = decision.need
    ctes = _claim_ctes(params, decision, skip_locked=skip_locked, only_with="waiting")
    takes = _takes(params, networks)
    take_ctes = "".join(f",\n             {t.ctes(placed='placed')}" for t in takes)
    take_columns = "".join(f",\n               {t.columns()}" for t in takes)
    sql = f"""
        WITH by_id AS MATERIALIZED (
            SELECT deleted_at, task_state, host, vcpus, ram_mb, disk_gb FROM servers
             WHERE id = $1),
             live AS (SELECT * FROM by_id WHERE deleted_at IS NULL),
             waiting AS (
            SELECT id FROM servers
             WHERE id = $1 AND deleted_at IS NULL AND task_state = 'scheduling'
               AND vcpus = {params.add(need.vcpus)} AND ram_mb = {params.add(need.ram_mb)}
               AND disk_gb = {params.add(need.disk_gb)}
               FOR UPDATE),
             {ctes},
             placed AS (
                UPDATE servers s SET host = claimed.name, task_state = 'spawning'
                  FROM claimed
                 WHERE s.id = $1 AND s.deleted_at IS NULL AND s.task_state = 'scheduling'
             RETURNING s.host){take_ctes}
        SELECT EXISTS (SELECT 1 FROM waiting) AS waiting, (SELECT host FROM placed) AS host,
               EXISTS (SELECT 1 FROM live) AS found,
               live.task_state, live.host AS placed_on, live.vcpus, live.ram_mb,
               live.disk_gb{take_columns}
          FROM (SELECT 1) AS one LEFT JOIN live ON true"""
    return sql, params.values, takes


def _takes(params: Params, networks: Sequence[Network]) -> list[ipam.PlacementTake]:
    """One address take a network, of the server ``$1``, for ``placement_statement``."""
    return [ipam.PlacementTake(params, i, n, server="$1") for i, n in enumerate(networks)]


@dataclass(frozen=True)
class Placed:
    """What ``place`` did and found (``placement_statement``): ``waiting`` (False: the server
    no longer waited for a host of this need, nothing was claimed), the ``host`` claimed
    (None: none); ``found`` False when the server is gone, else its ``task_state``, the host
    it is on (``placed_on``) and its resources (``held``), as the statement saw them."""

    waiting: bool
    host: str | None
    found: bool
    task_state: str | None
    placed_on: str | None
    held: Resources | None
    #: network label -> what the statement did about the server's address there, when it
    #: placed the server now and was asked to take addresses (empty otherwise)
    addresses: Mapping[str, ipam.BuildTake] = field(default_factory=dict)

    @classmethod
    def from_record(cls, row: asyncpg.Record, takes: Sequence[ipam.PlacementTake] = ()) -> Placed:
        held = Resources(row["vcpus"], row["ram_mb"], row["disk_gb"]) if row["found"] else None
        addresses: dict[str, ipam.BuildTake] = {}
        if row["host"] is not None:
            addresses = {take.network: take.read(row) for take in takes}
        return cls(
            waiting=row["waiting"],
            host=row["host"],
            found=row["found"],
            task_state=row["task_state"],
            placed_on=row["placed_on"],
            held=held,
            addresses=addresses,
        )


async def claim(conn: Executor, decision: Decision, *, skip_locked: bool) -> str | None:
    """Claim ``need`` on a host: its name, or None when no host had room (or, with
    ``skip_locked``, none with room was free of another decision's lock)."""
    sql, values = claim_statement(decision, skip_locked=skip_locked)
    host: str | None = await conn.fetchval(sql, *values)
    return host


async def place(
    conn: Executor,
    server_id: uuid.UUID,
    decision: Decision,
    *,
    skip_locked: bool,
    networks: Sequence[Network] = (),
) -> Placed:
    """Run ``placement_statement`` (taking the server's addresses on ``networks`` if it
    places it now)."""
    sql, values, takes = _placement(server_id, decision, skip_locked=skip_locked, networks=networks)
    row = await conn.fetchrow(sql, *values)
    assert row is not None  # the statement's SELECT is of one row joined to at most one
    return Placed.from_record(row, takes)


async def ranked_names(conn: Executor, decision: Decision, *, limit: int) -> list[str]:
    """The ``limit`` best hosts that can take ``need`` now, best first."""
    params = Params()
    query = f"{ranked(params, decision)} LIMIT {params.add(limit)}"
    return [r["name"] for r in await conn.fetch(query, *params.values)]


def _usage_with(params: Params, planned: Mapping[str, Resources]) -> str:
    """A FROM item with ``compute_hosts``' columns, whose usage includes ``planned``."""
    names = sorted(planned)
    return f"""(SELECT h.name, h.enabled, h.up, h.last_heartbeat, h.vcpus, h.ram_mb, h.disk_gb,
                       h.vcpus_used + COALESCE(p.vcpus, 0) AS vcpus_used,
                       h.ram_mb_used + COALESCE(p.ram_mb, 0) AS ram_mb_used,
                       h.disk_gb_used + COALESCE(p.disk_gb, 0) AS disk_gb_used
                  FROM compute_hosts h
                  LEFT JOIN unnest({params.add(names)}::text[],
                                   {params.add([planned[n].vcpus for n in names])}::int[],
                                   {params.add([planned[n].ram_mb for n in names])}::int[],
                                   {params.add([planned[n].disk_gb for n in names])}::int[])
                       AS p (name, vcpus, ram_mb, disk_gb) ON p.name = h.name) AS planned_hosts"""


async def best_host(
    conn: Executor, decision: Decision, *, planned: Mapping[str, Resources]
) -> str | None:
    """The best host for ``need`` if ``planned`` (host -> resources) were claimed too, or
    None when none has room: a claim's first choice, read without writing or locking."""
    params = Params()
    among = _usage_with(params, planned)
    query = f"{ranked(params, decision, among=among)} LIMIT 1"
    host: str | None = await conn.fetchval(query, *params.values)
    return host
