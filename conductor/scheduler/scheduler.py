"""Pick a host for a server and claim its resources there, atomically.

A decision is one SQL statement: the filters are predicates, the weighers the order, and the
claim an UPDATE of the row the query chose (for a build, the server's assignment to it too),
all in the database, so a decision costs one round trip however many hosts there are (no
host row travels to the conductor). At 1,000 hosts PostgreSQL reads ``compute_hosts``
sequentially (15 pages): every host passes ``enabled AND up``, and the capacity predicates
compare a row's columns with each other, which no B-tree narrows; the whole decision takes
under a millisecond inside PostgreSQL (bench/scale.py).

Concurrent conductors must never overcommit a host, and should not queue behind each other
for the same best host either. The chosen rows are locked ``FOR UPDATE SKIP LOCKED``: a
conductor deciding while another holds the best host's row takes the next best instead of
waiting; and the UPDATE repeats the capacity condition on the row it locked, so whatever
happened since the query's snapshot, usage never exceeds capacity * ratio. Only when every
fitting host is locked by someone else does a claim wait for the locks (the plain ``FOR
UPDATE``, which rechecks each row once its holder is done, one host at a time), so
NoValidHost always means no host has room, never "the hosts with room were busy".

Among the ``subset_size`` best unlocked hosts one is taken at random, so that servers asked
for at the same moment spread instead of piling onto one host (nova's host_subset_size).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from conductor.scheduler.filters import AliveFilter, CapacityFilter, ExcludeHostsFilter, HostFilter
from conductor.scheduler.timing import timed_decision
from conductor.scheduler.weighers import FreeRamWeigher, HostWeigher
from shared.db.hosts import Ratios, Resources
from shared.db.pool import Conn
from shared.db.sql import Params


class NoValidHost(Exception):
    """No host can take the server now."""

    def __str__(self) -> str:
        return "No valid host was found. There are not enough hosts available."


class Scheduler:
    def __init__(self, *, ratios: Ratios, down_after_s: float, subset_size: int) -> None:
        self.ratios = ratios
        self.down_after_s = down_after_s
        self.subset_size = max(1, subset_size)

    def _filters(self, need: Resources, exclude: Sequence[str]) -> list[HostFilter]:
        chosen: list[HostFilter] = [
            AliveFilter(self.down_after_s),
            CapacityFilter(need, self.ratios),
        ]
        if exclude:
            chosen.append(ExcludeHostsFilter(exclude))
        return chosen

    def _weighers(self) -> list[HostWeigher]:
        return [FreeRamWeigher(self.ratios.ram)]

    def _ranked(self, params: Params, need: Resources, exclude: Sequence[str]) -> str:
        """SELECT of the fitting hosts' names, best first (no LIMIT, no locking)."""
        where = " AND ".join(f"({f.predicate(params)})" for f in self._filters(need, exclude))
        weight = " + ".join(w.expression(params) for w in self._weighers())
        return f"SELECT name FROM compute_hosts WHERE {where} ORDER BY {weight} DESC, name"

    async def candidates(
        self, conn: Conn, need: Resources, exclude: Sequence[str] = (), *, limit: int = 20
    ) -> list[str]:
        """Hosts that can take ``need`` now, best first (what a decision chooses among)."""
        params = Params()
        query = f"{self._ranked(params, need, exclude)} LIMIT {params.add(limit)}"
        return [r["name"] for r in await conn.fetch(query, *params.values)]

    def _claim_ctes(
        self,
        params: Params,
        need: Resources,
        exclude: Sequence[str],
        *,
        skip_locked: bool,
        only_with: str = "",
    ) -> str:
        """The CTEs of a claim: ``best`` (the ``subset_size`` best fitting hosts, locked),
        ``chosen`` (one of them at random) and ``claimed`` (``need`` added to its usage if it
        still fits, RETURNING its name); ``only_with``: a CTE that must have a row for the
        claim to happen (the server still waiting for a host)."""
        ranked = self._ranked(params, need, exclude)
        if skip_locked:
            lock, subset = "FOR UPDATE SKIP LOCKED", params.add(self.subset_size)
        else:
            # waiting for locks, one row at a time: two waiters never hold rows the other wants
            lock, subset = "FOR UPDATE", params.add(1)
        fits = CapacityFilter(need, self.ratios).predicate(params)
        also = f", {only_with}" if only_with else ""
        return f"""best AS MATERIALIZED ({ranked} LIMIT {subset} {lock}),
             chosen AS (SELECT name FROM best ORDER BY random() LIMIT 1),
             claimed AS (
                UPDATE compute_hosts h
                   SET vcpus_used = vcpus_used + {params.add(need.vcpus)},
                       ram_mb_used = ram_mb_used + {params.add(need.ram_mb)},
                       disk_gb_used = disk_gb_used + {params.add(need.disk_gb)}
                  FROM chosen{also}
                 WHERE h.name = chosen.name AND {fits}
             RETURNING h.name)"""

    def claim_statement(
        self, need: Resources, exclude: Sequence[str], *, skip_locked: bool
    ) -> tuple[str, list[object]]:
        """A claim alone: the name of the host ``need`` was added to, or no row. (Public so
        that benchmarks and tests can EXPLAIN it.)"""
        params = Params()
        ctes = self._claim_ctes(params, need, exclude, skip_locked=skip_locked)
        return f"WITH {ctes} SELECT name FROM claimed", params.values

    def placement_statement(
        self, server_id: uuid.UUID, need: Resources, exclude: Sequence[str], *, skip_locked: bool
    ) -> tuple[str, list[object]]:
        """A whole decision for a server waiting in ``scheduling``, in one statement: lock the
        server's row, claim ``need`` on a host, assign the server to it (``spawning``).
        One row: ``waiting`` (was the server still waiting: not, when it was deleted
        meanwhile, and then nothing is claimed) and ``host`` (NULL: no host had room)."""
        params = Params(server_id)
        ctes = self._claim_ctes(params, need, exclude, skip_locked=skip_locked, only_with="waiting")
        sql = f"""
            WITH waiting AS (
                SELECT id FROM servers
                 WHERE id = $1 AND deleted_at IS NULL AND task_state = 'scheduling'
                   FOR UPDATE),
                 {ctes},
                 placed AS (
                    UPDATE servers s SET host = claimed.name, task_state = 'spawning'
                      FROM claimed
                     WHERE s.id = $1 AND s.deleted_at IS NULL AND s.task_state = 'scheduling'
                 RETURNING s.host)
            SELECT EXISTS (SELECT 1 FROM waiting) AS waiting, (SELECT host FROM placed) AS host"""
        return sql, params.values

    async def _claim(self, conn: Conn, need: Resources, exclude: Sequence[str]) -> str:
        """Claim ``need`` on a host; raises ``NoValidHost``."""
        for skip_locked in (True, False):
            sql, values = self.claim_statement(need, exclude, skip_locked=skip_locked)
            host: str | None = await conn.fetchval(sql, *values)
            if host is not None:
                return host
        raise NoValidHost

    @timed_decision(NoValidHost)
    async def claim_host(
        self,
        conn: Conn,
        server_id: uuid.UUID,
        need: Resources,
        *,
        exclude: Sequence[str] = (),
    ) -> str | None:
        """Claim ``need`` on the best host and assign the server to it: one statement, one
        round trip, atomic on its own (no transaction to open and commit). Returns the host,
        or None when the server no longer waits for one (deleted meanwhile: nothing is
        claimed). Raises ``NoValidHost`` when no host has room."""
        for skip_locked in (True, False):
            sql, values = self.placement_statement(
                server_id, need, exclude, skip_locked=skip_locked
            )
            row = await conn.fetchrow(sql, *values)
            assert row is not None  # the statement's SELECT has no FROM: always one row
            if not row["waiting"]:
                return None
            if row["host"] is not None:
                return str(row["host"])
        raise NoValidHost

    @timed_decision(NoValidHost)
    async def claim(self, conn: Conn, need: Resources, *, exclude: Sequence[str] = ()) -> str:
        """Claim ``need`` on the best host that still has room, without placing anything
        there: the caller records what the claim is for in its own transaction (a resize's
        destination). Raises ``NoValidHost``."""
        return await self._claim(conn, need, exclude)
