"""Faults struck while clients boot, act on and delete servers through both gateways.

Each test starts the load, strikes its fault a few seconds in, heals it (the killed process
or the stopped server is started again), lets the load run on a little, stops it, waits for
the system to settle and then checks (tests/faults/checks.py) that nothing accepted was
lost, nothing is stuck, no ERROR is left unexplained, no answer was a server error, host
usage is exact and the hypervisors agree with the database.

The dependencies are both stopped gracefully and crashed (SIGKILL of every PostgreSQL
process: crash recovery on restart; SIGKILL of the RabbitMQ node: its non-durable state,
the heartbeats in flight and every caller's exclusive reply queue, is gone). Each role is
struck twice in its run, the second blow after the cluster is whole again; the chaos round
kills a random role every few seconds for a minute.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
import pytest

from tests.faults import checks
from tests.faults.checks import Outcome
from tests.faults.cluster import CONDUCTORS, GATEWAYS, HOSTS
from tests.faults.conftest import OUTCOMES, FaultEnv
from tests.faults.duplicates import Duplicator
from tests.faults.load import Load

pytestmark = pytest.mark.faults

CLIENTS = 12
#: Load before the fault, and after the cluster is whole again.
LEAD_S = 4.0
TAIL_S = 4.0
#: Load between the two blows of a role's fault, once the first has healed.
BETWEEN_BLOWS_S = 3.0
#: The chaos round: a random role killed every few seconds, for a minute.
CHAOS_S = 60.0
CHAOS_EVERY_S = (3.0, 6.0)

Inject = Callable[[FaultEnv], Awaitable[None]]


async def run_fault(env: FaultEnv, name: str, inject: Inject) -> Outcome:
    """Load, fault, heal, settle, check; the outcome becomes a row of the table."""
    tenant = f"fault-{name}-{uuid.uuid4().hex[:6]}"
    outcome = Outcome(name)
    OUTCOMES.append(outcome)
    usage_before = await _usage(env)
    load = Load(env.cluster.gateways, tenant, CLIENTS)
    await load.start()
    try:
        await asyncio.sleep(LEAD_S)
        await inject(env)
        await env.cluster.wait_healthy()
        await asyncio.sleep(TAIL_S)
    finally:
        await load.stop()
    conn = await asyncpg.connect(env.cluster.database_url)
    try:
        await checks.settle(conn, tenant)
        await checks.account(conn, load.ledger, tenant, outcome)
        await checks.count_stuck(conn, tenant, outcome)
        checks.compare_usage(usage_before, await checks.usage_mismatch(conn), outcome)
        await checks.check_domains(conn, env.watch, tenant, outcome)
        await checks.drain_dead_letters(env.cluster.rabbit.url, env.cluster.prefix, outcome)
    finally:
        await conn.close()
    return outcome


async def _usage(env: FaultEnv) -> checks.Usage:
    conn = await asyncpg.connect(env.cluster.database_url)
    try:
        return await checks.usage_mismatch(conn)
    finally:
        await conn.close()


def _assert_ok(outcome: Outcome) -> None:
    assert outcome.accepted > 0, "the load got nothing accepted"
    assert outcome.ok, "\n".join(outcome.problems[:40])


# --- the faults ---------------------------------------------------------------------------


async def _restart_rabbitmq(env: FaultEnv) -> None:
    await asyncio.to_thread(env.cluster.rabbit.stop)
    await asyncio.sleep(1.0)
    await asyncio.to_thread(env.cluster.rabbit.start)


async def _crash_rabbitmq(env: FaultEnv) -> None:
    """SIGKILL the node (beam.smp and its wrapper) mid-load, twice."""
    for _ in range(2):
        await asyncio.to_thread(env.cluster.rabbit.kill)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(env.cluster.rabbit.start)
        await _between_blows(env)


async def _restart_postgres(env: FaultEnv) -> None:
    await asyncio.to_thread(env.cluster.postgres.stop, "fast")
    await asyncio.sleep(4.0)
    await asyncio.to_thread(env.cluster.postgres.start)


async def _crash_postgres(env: FaultEnv) -> None:
    """SIGKILL every PostgreSQL process mid-load (crash recovery on restart), twice."""
    for _ in range(2):
        await asyncio.to_thread(env.cluster.postgres.crash)
        await asyncio.sleep(2.0)
        await asyncio.to_thread(env.cluster.postgres.start)
        await _between_blows(env)


async def _kill_conductors(env: FaultEnv) -> None:
    await _kill_in_turn(env, CONDUCTORS)


async def _kill_gateways(env: FaultEnv) -> None:
    await _kill_in_turn(env, GATEWAYS)


async def _kill_in_turn(env: FaultEnv, names: Sequence[str]) -> None:
    """Each of ``names`` (the role's two processes) killed in turn, the cluster whole again
    between the blows."""
    for name in names:
        await env.cluster.restart(name, down_s=2.0)
        await _between_blows(env)


async def _between_blows(env: FaultEnv) -> None:
    await env.cluster.wait_healthy()
    await asyncio.sleep(BETWEEN_BLOWS_S)


async def _kill_agents(env: FaultEnv) -> None:
    """Twice: kill the agent whose host is busiest with builds and resizes right now."""
    for _ in range(2):
        host, builds, resizes = await _busy_host(env.cluster.database_url)
        _strike_host(host, f"with {builds} builds and {resizes} resizes on it")
        await env.cluster.restart(host, down_s=2.0)
        await _between_blows(env)


def _strike_host(host: str, what: str = "") -> None:
    """An agent is about to be killed: its test:/// hypervisor dies with it, so an ERROR
    that names its host is the fault's doing."""
    OUTCOMES[-1].struck_hosts.add(host)
    OUTCOMES[-1].notes.append(f"killed {host} {what}".rstrip())


async def _busy_host(database_url: str, wait_s: float = 5.0) -> tuple[str, int, int]:
    """(host, builds, resizes): the first host seen with both a build and a resize under
    way within ``wait_s``, else the busiest host at the last look."""
    conn = await asyncpg.connect(database_url)
    try:
        deadline = asyncio.get_running_loop().time() + wait_s
        while True:
            work = [(host, *await _work_on(conn, host)) for host in HOSTS]
            both = [w for w in work if w[1] and w[2]]
            if both or asyncio.get_running_loop().time() > deadline:
                return max(both or work, key=lambda w: w[1] + w[2])
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


async def _work_on(conn: asyncpg.Connection, host: str) -> tuple[int, int]:
    builds = await conn.fetchval(
        "SELECT count(*) FROM servers WHERE host = $1 AND task_state = 'spawning'", host
    )
    resizes = await conn.fetchval(
        """SELECT count(*) FROM migrations WHERE status IN ('migrating', 'post-migrating')
             AND $1 IN (source_host, dest_host)""",
        host,
    )
    return int(builds), int(resizes)


async def _chaos(env: FaultEnv) -> None:
    """For a minute, every few seconds, SIGKILL a random process of any role; each is
    started again after a moment, without waiting for the cluster to heal between blows."""
    roles = [*GATEWAYS, *CONDUCTORS, *HOSTS]
    end = asyncio.get_running_loop().time() + CHAOS_S
    blows: list[str] = []
    while asyncio.get_running_loop().time() < end:
        name = random.choice(roles)
        if name in HOSTS:
            OUTCOMES[-1].struck_hosts.add(name)
        blows.append(name)
        await env.cluster.restart(name, down_s=random.uniform(0.5, 2.0))
        await asyncio.sleep(random.uniform(*CHAOS_EVERY_S))
    OUTCOMES[-1].notes.append(f"killed in turn: {', '.join(blows)}")


async def _duplicate_messages(env: FaultEnv) -> None:
    duplicator = Duplicator(env.cluster.rabbit.url, env.cluster.prefix)
    await duplicator.start()
    try:
        await asyncio.sleep(8.0)
    finally:
        await duplicator.close()
    assert duplicator.copied, "no message was duplicated"
    OUTCOMES[-1].notes.append(f"copies sent: {duplicator.copied}")
    if duplicator.failed:
        OUTCOMES[-1].notes.append(f"copies not sent: {duplicator.failed[:5]}")


async def test_rabbitmq_restart(fault_env: FaultEnv) -> None:
    _assert_ok(await run_fault(fault_env, "rabbitmq-restart", _restart_rabbitmq))


async def test_rabbitmq_crash(fault_env: FaultEnv) -> None:
    _assert_ok(await run_fault(fault_env, "rabbitmq-kill-9 x2", _crash_rabbitmq))


async def test_postgres_restart(fault_env: FaultEnv) -> None:
    _assert_ok(await run_fault(fault_env, "postgres-restart", _restart_postgres))


async def test_postgres_crash(fault_env: FaultEnv) -> None:
    _assert_ok(await run_fault(fault_env, "postgres-kill-9 x2", _crash_postgres))


async def test_conductors_killed(fault_env: FaultEnv) -> None:
    _assert_ok(await run_fault(fault_env, "conductor-kill-9 x2", _kill_conductors))


async def test_agents_killed_mid_build_and_resize(fault_env: FaultEnv) -> None:
    _assert_ok(await run_fault(fault_env, "agent-kill-9 x2", _kill_agents))


async def test_gateways_killed(fault_env: FaultEnv) -> None:
    _assert_ok(await run_fault(fault_env, "gateway-kill-9 x2", _kill_gateways))


async def test_duplicate_deliveries(fault_env: FaultEnv) -> None:
    _assert_ok(await run_fault(fault_env, "duplicates", _duplicate_messages))


async def test_chaos(fault_env: FaultEnv) -> None:
    _assert_ok(await run_fault(fault_env, "chaos", _chaos))
