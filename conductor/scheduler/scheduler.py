"""Pick a host for a server and claim its resources there, atomically.

The candidates come from one SQL query (filters as predicates, weighers as the order). The
scheduler tries them best first, but starts at a random one of the ``subset_size`` best so that
conductors deciding at the same moment seldom pick the same host; a lost race costs one more
conditional update, never an overcommitted host.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence

from conductor.scheduler.filters import AliveFilter, CapacityFilter, ExcludeHostsFilter, HostFilter
from conductor.scheduler.weighers import FreeRamWeigher, HostWeigher
from shared.db.hosts import Ratios, Resources
from shared.db.pool import Conn
from shared.db.sql import Params

_CANDIDATES = 20


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

    async def candidates(
        self, conn: Conn, need: Resources, exclude: Sequence[str] = ()
    ) -> list[str]:
        """Hosts that can take ``need`` now, best first."""
        params = Params()
        where = " AND ".join(f"({f.predicate(params)})" for f in self._filters(need, exclude))
        weight = " + ".join(w.expression(params) for w in self._weighers())
        rows = await conn.fetch(
            f"SELECT name FROM compute_hosts WHERE {where}"
            f" ORDER BY {weight} DESC, name LIMIT {_CANDIDATES}",
            *params.values,
        )
        names = [r["name"] for r in rows]
        if len(names) > 1:
            first = random.randrange(min(self.subset_size, len(names)))
            names.insert(0, names.pop(first))
        return names

    async def claim_host(
        self,
        conn: Conn,
        server_id: uuid.UUID,
        need: Resources,
        *,
        exclude: Sequence[str] = (),
    ) -> str | None:
        """Claim ``need`` on the best host and assign the server to it, in one transaction each
        try. Returns the host, or None when the server stopped waiting (deleted meanwhile).
        Raises ``NoValidHost`` when no host has room."""
        for host in await self.candidates(conn, need, exclude):
            try:
                async with conn.transaction():
                    if not await self._claim(conn, host, need):
                        continue  # someone filled it since the query: try the next one
                    assigned = await conn.execute(
                        """UPDATE servers SET host = $2, task_state = 'spawning'
                            WHERE id = $1 AND deleted_at IS NULL AND task_state = 'scheduling'""",
                        server_id,
                        host,
                    )
                    if assigned == "UPDATE 0":
                        raise _ServerGone
                    return host
            except _ServerGone:
                return None
        raise NoValidHost

    async def claim(self, conn: Conn, need: Resources, *, exclude: Sequence[str] = ()) -> str:
        """Claim ``need`` on the best host that still has room, without placing anything
        there: the caller records what the claim is for in its own transaction (a resize's
        destination). Raises ``NoValidHost``."""
        for host in await self.candidates(conn, need, exclude):
            if await self._claim(conn, host, need):
                return host
        raise NoValidHost

    async def _claim(self, conn: Conn, host: str, need: Resources) -> bool:
        """Add ``need`` to ``host``'s usage if it still fits: one conditional UPDATE, so two
        conductors deciding at once cannot overcommit a host (the second matches no row)."""
        params = Params(host, need.vcpus, need.ram_mb, need.disk_gb)
        fits = CapacityFilter(need, self.ratios).predicate(params)
        status = await conn.execute(
            f"""UPDATE compute_hosts
                   SET vcpus_used = vcpus_used + $2, ram_mb_used = ram_mb_used + $3,
                       disk_gb_used = disk_gb_used + $4
                 WHERE name = $1 AND {fits}""",
            *params.values,
        )
        return bool(status == "UPDATE 1")


class _ServerGone(Exception):
    """Raised inside the claim transaction to roll the claim back."""
