"""Power states a hypervisor reports on its own, applied to the servers they are about.

A guest may shut itself down, crash or be paused by its hypervisor: its power and vm_state
(``vm_state_for_power``) follow, but only if the server is on the reporting host, runs no
task, and has not changed since the host looked (conductor/legality.py, ``observation_refusal``),
so such an observation never overtakes an action, nor an earlier one a later one.

Whether the host looked after the last change is never read from the host's clock, which
may be minutes off PostgreSQL's: an agent's PowerStateReport is a hint, whose servers the
conductor probes where it disagrees with the database (``disagreements``,
conductor/reconcile.py), and the probe's answer (ProbeReport) is applied, the host having
looked after the probe's ``probe_at``, a time of PostgreSQL's (``apply_probed_power``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from conductor.legality import observation_refusal
from shared.db import server_power
from shared.db.pool import Conn
from shared.db.records import ServerStates
from shared.messages import ProbeReport, ServerPower
from shared.states import PowerState, VmState, vm_state_for_power

log = logging.getLogger(__name__)


async def apply_probed_power(pool: asyncpg.Pool, report: ProbeReport) -> int:
    """Apply the power of each probed server as the host saw it, after ``probe_at``
    (NOSTATE for one it has no domain for), where it is legal and the server unchanged since
    before ``probe_at``: then the look is newer than the server's last change, whatever the
    host's clock says. A duplicate answer finds nothing new. How many servers changed."""
    powers = {observed.server_id: observed.power_state for observed in report.found}
    changed = 0
    for server_id in report.servers:
        observed = ServerPower(
            server_id=server_id, power_state=powers.get(server_id, int(PowerState.NOSTATE))
        )
        async with pool.acquire() as conn, conn.transaction():
            if await _apply_power(conn, report.host, observed, looked_after=report.probe_at):
                changed += 1
    return changed


async def disagreements(
    pool: asyncpg.Pool, host: str, observed: Sequence[ServerPower]
) -> list[uuid.UUID]:
    """The servers a hint's power would change if the host had looked after their last
    change (on ``host``, running no task, in another power or vm_state): the ones worth a
    probe. When it agrees with the database, nothing is to be learned by asking."""
    rows = await server_power.live_rows(pool, [o.server_id for o in observed])
    by_id = {row.id: row for row in rows}
    return [
        o.server_id
        for o in observed
        if (row := by_id.get(o.server_id)) is not None
        and observation_refusal(row, host, looked_after=None) is None
        and _power_change(row, o) is not None
    ]


async def _apply_power(
    conn: Conn, host: str, observed: ServerPower, *, looked_after: datetime
) -> bool:
    """``looked_after``: a time, on PostgreSQL's clock, the host's look is known to follow."""
    row = await server_power.lock(conn, observed.server_id)
    refusal = observation_refusal(row, host, looked_after=looked_after)
    if refusal is not None:
        # routine: the agent reports what it sees whatever the server is doing
        log.debug("ignoring power state of %s from %s: %s", observed.server_id, host, refusal)
        return False
    assert row is not None
    change = _power_change(row, observed)
    if change is None:
        return False  # nothing new: the row (and its updated_at) stays as it is
    await _record_power(conn, observed.server_id, *change, row)
    return True


def _power_change(row: ServerStates, observed: ServerPower) -> tuple[PowerState, VmState] | None:
    """The power and vm_state ``observed`` gives the server; None when that is nothing new
    (or the power is not one we know)."""
    try:
        power = PowerState(observed.power_state)
        vm_state = vm_state_for_power(VmState(row.vm_state), power)
    except ValueError:
        log.warning("ignoring power state %r of %s", observed.power_state, observed.server_id)
        return None
    if (power, vm_state) == (row.power_state, row.vm_state):
        return None
    return power, vm_state


async def _record_power(
    conn: Conn, server_id: uuid.UUID, power: PowerState, vm_state: VmState, row: ServerStates
) -> None:
    await server_power.record(conn, server_id, power, vm_state)
    if vm_state != row.vm_state:
        log.info(
            "server %s is %s on %s (its hypervisor says %s)",
            server_id,
            vm_state.value,
            row.host,
            power.name.lower(),
        )
