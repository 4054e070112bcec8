"""Faults struck while clients boot, act on and delete servers through both gateways.

Each test starts the load, strikes one fault a few seconds in, heals it (the killed process
or the stopped server is started again), lets the load run on a little, stops it, waits for
the system to settle and then checks (tests/faults/checks.py) that nothing accepted was
lost, nothing is stuck, host usage is exact and the hypervisors agree with the database.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from tests.faults import checks
from tests.faults.checks import Outcome
from tests.faults.cluster import HOSTS
from tests.faults.conftest import OUTCOMES, FaultEnv
from tests.faults.duplicates import Duplicator
from tests.faults.load import Load

pytestmark = pytest.mark.faults

CLIENTS = 12
#: Load before the fault, and after the cluster is whole again.
LEAD_S = 4.0
TAIL_S = 4.0
SETTLE_S = checks.STUCK_AFTER_S + 5.0

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
        await checks.settle(conn, tenant, SETTLE_S)
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


async def _restart_postgres(env: FaultEnv) -> None:
    await asyncio.to_thread(env.cluster.postgres.stop, "fast")
    await asyncio.sleep(4.0)
    await asyncio.to_thread(env.cluster.postgres.start)


async def _kill_conductor(env: FaultEnv) -> None:
    await env.cluster.restart("conductor-1", down_s=2.0)


async def _kill_agent(env: FaultEnv) -> None:
    """Kill the agent whose host is busiest with builds and resizes right now."""
    host, builds, resizes = await _busy_host(env.cluster.database_url)
    OUTCOMES[-1].notes.append(f"killed {host} with {builds} builds and {resizes} resizes on it")
    await env.cluster.restart(host, down_s=2.0)


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


async def _kill_gateway(env: FaultEnv) -> None:
    await env.cluster.restart("api-1", down_s=2.0)


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


async def test_postgres_restart(fault_env: FaultEnv) -> None:
    _assert_ok(await run_fault(fault_env, "postgres-restart", _restart_postgres))


async def test_conductor_killed(fault_env: FaultEnv) -> None:
    _assert_ok(await run_fault(fault_env, "conductor-kill-9", _kill_conductor))


async def test_agent_killed_mid_build_and_resize(fault_env: FaultEnv) -> None:
    _assert_ok(await run_fault(fault_env, "agent-kill-9", _kill_agent))


async def test_gateway_killed(fault_env: FaultEnv) -> None:
    _assert_ok(await run_fault(fault_env, "gateway-kill-9", _kill_gateway))


async def test_duplicate_deliveries(fault_env: FaultEnv) -> None:
    _assert_ok(await run_fault(fault_env, "duplicates", _duplicate_messages))
