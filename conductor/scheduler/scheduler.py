"""Pick a host for a server and claim its resources there, atomically.

The scheduler is the policy: which filters a decision applies (alive, room under the
allocation ratios, not the hosts to avoid), how hosts are weighed (free RAM), and among how
many of the best one is taken at random, so that servers asked for at the same moment spread
instead of piling onto one host (nova's host_subset_size). The statements that apply it are
shared/db/placement.py's: one per decision, so a decision costs one round trip however many
hosts there are.

A claim first skips the hosts another conductor is deciding on; only when every fitting host
is locked does it wait for the locks, so NoValidHost always means no host has room, never
"the hosts with room were busy".
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence

import asyncpg

from conductor.scheduler.timing import timed_decision
from shared.db import placement
from shared.db.hosts import Ratios, Resources
from shared.db.placement import (
    AliveFilter,
    CapacityFilter,
    ExcludeHostsFilter,
    FreeRamWeigher,
    OnlyHostFilter,
)
from shared.db.pool import Conn
from shared.networks import Network
from shared.states import TaskState

log = logging.getLogger(__name__)


class NoValidHost(Exception):
    """No host can take the server now."""

    def __str__(self) -> str:
        return "No valid host was found. There are not enough hosts available."


def _placement_outcome(placed: placement.Placed) -> str | None:
    """How a placement ended, for the decision metrics: None when no decision was made (the
    server was placed already, by an earlier delivery of its build, or asks for other
    resources and is placed again)."""
    if placed.host is not None:
        return "placed"
    if placed.task_state == TaskState.SCHEDULING and not placed.waiting and placed.found:
        return None
    if placed.task_state == TaskState.SPAWNING and placed.placed_on is not None:
        return None
    return "gone"


class Scheduler:
    def __init__(self, *, ratios: Ratios, subset_size: int) -> None:
        self.ratios = ratios
        self.subset_size = max(1, subset_size)

    def decision(
        self, need: Resources, exclude: Sequence[str] = (), *, only: str | None = None
    ) -> placement.Decision:
        """The placement of ``need`` by this scheduler's rules, on any host but ``exclude``
        (on ``only``, when given, if it passes them)."""
        filters: list[placement.HostFilter] = [
            AliveFilter(),
            CapacityFilter(need, self.ratios),
        ]
        if exclude:
            filters.append(ExcludeHostsFilter(exclude))
        if only is not None:
            filters.append(OnlyHostFilter(only))
        return placement.Decision(
            need=need,
            ratios=self.ratios,
            filters=filters,
            weighers=[FreeRamWeigher(self.ratios.ram)],
            subset_size=self.subset_size,
        )

    async def candidates(
        self, conn: Conn, need: Resources, exclude: Sequence[str] = (), *, limit: int = 20
    ) -> list[str]:
        """Hosts that can take ``need`` now, best first (what a decision chooses among)."""
        return await placement.ranked_names(conn, self.decision(need, exclude), limit=limit)

    async def preview(
        self,
        conn: Conn,
        need: Resources,
        *,
        exclude: Sequence[str] = (),
        planned: Mapping[str, Resources],
    ) -> str | None:
        """Where ``need`` would go now if ``planned`` (host -> resources) were claimed too,
        or None when nowhere has room; nothing is claimed or locked. The best host, not a
        random one of the best few as a claim picks: so two previews agree."""
        return await placement.best_host(conn, self.decision(need, exclude), planned=planned)

    def placement_statement(
        self, server_id: uuid.UUID, need: Resources, exclude: Sequence[str], *, skip_locked: bool
    ) -> tuple[str, list[object]]:
        """The statement of ``claim_host`` (public so that benchmarks and tests can EXPLAIN
        it)."""
        return placement.placement_statement(
            server_id, self.decision(need, exclude), skip_locked=skip_locked
        )

    async def place_server(
        self,
        conn: Conn,
        server_id: uuid.UUID,
        need: Resources,
        *,
        networks: Sequence[Network] = (),
    ) -> placement.Placed:
        """Claim ``need`` on the best host and assign the server waiting in ``scheduling`` to
        it: one statement, one round trip, atomic on its own (no transaction to open and
        commit), which also says what became of a server that no longer waits (gone, placed
        by an earlier delivery of its build...). Raises ``NoValidHost`` when no host has room.

        ``need`` is what the build asks for; should the server's row ask for other resources
        (it never does: both are the flavor's), nothing is claimed and the server is placed
        again with what its row asks for, as the row is what a delete gives back.

        With ``networks`` (a build's), a server placed now also takes an address on each
        in the same statement (``placed.addresses``): the build's common case is then one
        round trip in all."""
        placed = await self._place_server(conn, server_id, need, networks=networks)
        held = placed.held
        other_need = held is not None and held != need
        if not placed.waiting and placed.task_state == TaskState.SCHEDULING and other_need:
            assert held is not None
            log.warning("server %s needs %s, not %s as its build said", server_id, held, need)
            placed = await self._place_server(conn, server_id, held, networks=networks)
        return placed

    async def claim_host(
        self,
        conn: Conn,
        server_id: uuid.UUID,
        need: Resources,
        *,
        exclude: Sequence[str] = (),
    ) -> str | None:
        """``place_server``'s host: the one claimed, or None when the server no longer waits
        for a host of ``need`` (deleted meanwhile: nothing is claimed). Raises
        ``NoValidHost`` when no host has room."""
        return (await self._place_server(conn, server_id, need, exclude=exclude)).host

    @timed_decision(NoValidHost, outcome=_placement_outcome)
    async def _place_server(
        self,
        conn: Conn,
        server_id: uuid.UUID,
        need: Resources,
        *,
        exclude: Sequence[str] = (),
        networks: Sequence[Network] = (),
    ) -> placement.Placed:
        decision = self.decision(need, exclude)
        for skip_locked in (True, False):
            placed = await _place(
                conn, server_id, decision, skip_locked=skip_locked, networks=networks
            )
            if not placed.waiting or placed.host is not None:
                return placed
        raise NoValidHost

    @timed_decision(NoValidHost)
    async def claim(
        self,
        conn: Conn,
        need: Resources,
        *,
        exclude: Sequence[str] = (),
        only: str | None = None,
    ) -> str:
        """Claim ``need`` on the best host that still has room (``only`` that one, when
        given), without placing anything there: the caller records what the claim is for in
        its own transaction (a resize's or an evacuation's destination). Raises
        ``NoValidHost``."""
        decision = self.decision(need, exclude, only=only)
        for skip_locked in (True, False):
            host = await placement.claim(conn, decision, skip_locked=skip_locked)
            if host is not None:
                return host
        raise NoValidHost


#: how many times a placement is tried when PostgreSQL aborts it to break a deadlock
_DEADLOCK_TRIES = 3


async def _place(
    conn: Conn,
    server_id: uuid.UUID,
    decision: placement.Decision,
    *,
    skip_locked: bool,
    networks: Sequence[Network],
) -> placement.Placed:
    """``placement.place``, run again when PostgreSQL breaks a deadlock by aborting it (seen
    once in many runs of contended claims: two placements' row locks on hosts and servers met
    in opposite orders). Inside a caller's transaction the statement runs in a savepoint of
    its own, so the aborted try changed nothing and the next starts clean; outside one (a
    build) it is its own transaction already, atomic and rolled back whole when aborted, so
    no BEGIN and COMMIT are sent (two round trips of every build)."""
    for attempt in range(1, _DEADLOCK_TRIES + 1):
        try:
            if not conn.is_in_transaction():
                return await placement.place(
                    conn, server_id, decision, skip_locked=skip_locked, networks=networks
                )
            async with conn.transaction():
                return await placement.place(
                    conn, server_id, decision, skip_locked=skip_locked, networks=networks
                )
        except asyncpg.DeadlockDetectedError:
            if attempt == _DEADLOCK_TRIES:
                raise
            log.info("placing server %s met a deadlock; trying again", server_id)
    raise AssertionError("unreachable")
