#!/usr/bin/env python3
"""Scale benchmark: a simulated cluster of 1,000 hosts on one machine.

Prints, in order:

  1. scheduler decision latency at --hosts hosts: the scheduler's claim called directly
     against a database holding that many host rows (one caller, then --conductors callers
     at once), with the plan of the decision's one statement;
  2. conductor scaling: boots/s with 1 and with 2 conductor processes;
  3. end-to-end scheduling latency: POST /servers until the server has its host, and until
     it is ACTIVE, one server at a time;
  4. the boot storm: --boots servers into --hosts tight hosts (each fits exactly two
     m1.tiny) with --conductors conductor processes, one ``stratus agent --simulate``
     process and --gateways gateways; then every host's usage is checked against its
     capacity and the overcommitted hosts are counted (must be 0);
  5. page time of GET /servers/detail (limit 100, marker paging) in a project of 100 and of
     --page-servers servers (rows inserted directly), with the plan of a deep page;
  6. read throughput (GET /servers/detail) with 1 and 2 gateway processes.

Every phase with processes prints where the CPU went, and says what is CPU-bound (this is
meant for small machines: everything, the load generator included, shares the cores).

Everything runs on a fresh database (dropped afterwards) and a unique AMQP prefix (every
queue and exchange deleted afterwards), also when the run fails or is interrupted.

A smoke run: ``bench/scale.py --hosts 50 --boots 100 --scaling-boots 20 --page-servers 1000
--seconds 2``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import aio_pika.exceptions
import aiohttp
import asyncpg
import psutil
from stratus_bench import IMAGE, STRATUS, create_database, drop_database, free_port, percentile

from compute_agent.simulation import host_names
from conductor.scheduler.scheduler import Scheduler
from shared import sealing
from shared.bus import CONDUCTOR, HEARTBEATS, REPORTS, compute_queue
from shared.db.hosts import Ratios, Resources
from shared.db.pool import Conn
from shared.db.servers import page_query

#: m1.tiny, the flavor booted; a tight host has room for exactly two
TINY = Resources(vcpus=1, ram_mb=512, disk_gb=1)
SLOTS_PER_HOST = 2
SIM_PREFIX = "sim"
BOOT_TENANT = "scale-boot"


def log(line: str = "") -> None:
    print(line, flush=True)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def p50_p99(values: Sequence[float]) -> str:
    return f"p50 {ms(statistics.median(values))}  p99 {ms(percentile(list(values), 99))}"


# --- CPU accounting ----------------------------------------------------------------------


@dataclass
class CpuMeter:
    """CPU used during a phase: by each role's processes, the PostgreSQL backends of this
    benchmark's database, RabbitMQ (a shared broker: other users' load counts there too),
    this process (the load generator), the rest of the machine, and the busiest single
    process of the deployment. Counted per process: one that appears during the phase
    counts from its start, one that ends is lost (a short-lived backend, as little)."""

    roles: dict[str, list[int]]
    conn: asyncpg.Connection
    before: dict[int, float] = field(default_factory=dict)
    machine_before: float = 0.0
    started: float = 0.0
    wall_started: float = 0.0

    async def _groups(self) -> dict[str, list[int]]:
        groups = {"bench client": [os.getpid()], **self.roles}
        backends = await self.conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        )
        groups["postgresql"] = [r["pid"] for r in backends]
        groups["rabbitmq"] = [p.pid for p in _named("beam.smp")]
        return groups

    async def start(self) -> None:
        groups = await self._groups()
        self.before = {
            pid: seconds
            for pids in groups.values()
            for pid in pids
            if (seconds := _cpu_of(pid)) is not None
        }
        self.machine_before = _machine_seconds()
        self.started = time.monotonic()
        self.wall_started = time.time()

    def _since_start(self, pid: int) -> float:
        """CPU seconds ``pid`` used since the phase began."""
        now = _cpu_of(pid)
        if now is None:
            return 0.0
        if pid in self.before:
            return now - self.before[pid]
        process = _process(pid)
        new = process is not None and process.create_time() >= self.wall_started
        return now if new else 0.0

    async def report(self, phase: str) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        machine = (_machine_seconds() - self.machine_before) / elapsed
        groups = await self._groups()
        used = {
            name: sum(self._since_start(pid) for pid in pids) / elapsed
            for name, pids in groups.items()
        }
        used["other processes"] = max(0.0, machine - sum(used.values()))
        each = [
            (self._since_start(pid) / elapsed, role)
            for role, pids in self.roles.items()
            for pid in pids
        ]
        busiest = max(each, default=(0.0, ""))
        ranked = sorted(used.items(), key=lambda item: -item[1])
        shares = ", ".join(f"{name} {share * 100:.0f}%" for name, share in ranked if share > 0.01)
        cores = psutil.cpu_count() or 1
        log(f"  CPU during {phase}: machine {machine * 100:.0f}% of {cores * 100}%  [{shares}]")
        log(f"  -> {_verdict(machine, cores, ranked, busiest)}")


def _cpu_of(pid: int) -> float | None:
    process = _process(pid)
    if process is None:
        return None
    try:
        times = process.cpu_times()
    except psutil.Error:
        return None
    return float(times.user + times.system)


def _machine_seconds() -> float:
    times = psutil.cpu_times()
    return float(times.user + times.system + times.nice)


def _verdict(
    machine: float, cores: int, ranked: list[tuple[str, float]], busiest: tuple[float, str]
) -> str:
    """What limits the phase, in words: one process's event loop, all the cores, or
    neither (then the time goes to waiting: locks, round trips)."""
    share, role = busiest
    saturated = machine >= 0.85 * cores
    others = dict(ranked).get("other processes", 0.0)
    note = (
        f"; {others * 100:.0f}% went to processes outside this benchmark, so these numbers "
        "are lower bounds"
        if others > 0.25
        else ""
    )
    if share >= 0.75:
        cores_too = " (and all cores are busy)" if saturated else ""
        return (
            f"CPU-bound in one process: one of the {role} uses {share * 100:.0f}% of a core "
            f"(its single event loop){cores_too}{note}"
        )
    if saturated:
        ours = [name for name, _ in ranked if name != "other processes"]
        return (
            f"CPU-bound: all {cores} cores are busy; of this deployment {ours[0]} uses the "
            f"most{note}"
        )
    return (
        "not CPU-bound: the time goes to waiting (locks, round trips: see above what "
        "PostgreSQL was found doing)"
    )


def _process(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


def _named(name: str) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["name"]) if p.info["name"] == name]


#: the advisory locks Stratus takes, by the first half of their key
_ADVISORY_LOCKS = {
    0x51A70: "[waiting for a project's quota lock]",  # shared/db/quotas.py
}


async def sample_queries(conn: asyncpg.Connection, stop: asyncio.Event) -> tuple[Counter[str], int]:
    """What this database's backends are busy with (not idle), sampled every 20 ms until
    ``stop``: (the statement's first words -> times seen, samples taken)."""
    seen: Counter[str] = Counter()
    samples = 0
    while not stop.is_set():
        samples += 1
        rows = await conn.fetch(
            """SELECT a.backend_type, a.state, a.query,
                      (SELECT l.classid::int FROM pg_locks l
                        WHERE l.pid = a.pid AND l.locktype = 'advisory' AND NOT l.granted
                        LIMIT 1) AS waits_for
                 FROM pg_stat_activity a
                WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
                  AND a.state IS DISTINCT FROM 'idle'"""
        )
        for row in rows:
            query = " ".join((row["query"] or "").split())[:70]
            kind = row["backend_type"] if row["backend_type"] != "client backend" else ""
            state = row["state"] if row["state"] not in (None, "active") else ""
            waits = _ADVISORY_LOCKS.get(row["waits_for"], "")
            seen[" ".join(filter(None, (kind, state and f"[{state}]", waits, query)))] += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.02)
    return seen, samples


@contextlib.asynccontextmanager
async def busy_queries(database_url: str, top: int = 4) -> AsyncIterator[None]:
    """Print, after the block, the statements PostgreSQL was most often found running
    (sampled on a connection of its own)."""
    conn = await asyncpg.connect(database_url)
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_queries(conn, stop))
    try:
        yield
    finally:
        stop.set()
        seen, samples = await sampler
        await conn.close()
        busy = sum(seen.values())
        log(f"  PostgreSQL was found busy {busy} times in {samples} samples, running:")
        for query, count in seen.most_common(top):
            log(f"    {count / max(busy, 1) * 100:4.0f}%  {query}")


# --- 1. the scheduler alone --------------------------------------------------------------


async def insert_hosts(conn: Conn, count: int) -> None:
    """``count`` tight host rows, alive for an hour (no agent heartbeats them)."""
    await conn.execute(
        """INSERT INTO compute_hosts (name, hypervisor_type, hypervisor_uri, vcpus, ram_mb,
                                      disk_gb, last_heartbeat)
           SELECT 'bench-' || lpad(g::text, 5, '0'), 'fake', 'fake://', $2::int, $3::int,
                  $4::int, now()
             FROM generate_series(1, $1::int) g""",
        count,
        TINY.vcpus * SLOTS_PER_HOST,
        TINY.ram_mb * SLOTS_PER_HOST,
        TINY.disk_gb * SLOTS_PER_HOST,
    )
    await conn.execute("ANALYZE compute_hosts")


async def insert_waiting_servers(conn: Conn, count: int) -> list[uuid.UUID]:
    rows = await conn.fetch(
        """INSERT INTO servers (id, tenant_id, user_id, name, image_id, flavor_id, vcpus,
                                ram_mb, disk_gb, vm_state, task_state)
           SELECT gen_random_uuid(), 'bench', 'u', 's' || g, gen_random_uuid(), '1', $2::int,
                  $3::int, $4::int, 'building', 'scheduling'
             FROM generate_series(1, $1::int) g
        RETURNING id""",
        count,
        TINY.vcpus,
        TINY.ram_mb,
        TINY.disk_gb,
    )
    return [r["id"] for r in rows]


async def timed_claims(
    pool: asyncpg.Pool, scheduler: Scheduler, servers: Sequence[uuid.UUID], callers: int
) -> list[float]:
    """Latency of each claim, ``callers`` claiming at once (as that many conductors)."""
    latencies: list[float] = []

    async def caller(share: Sequence[uuid.UUID]) -> None:
        async with pool.acquire() as conn:
            for server_id in share:
                started = time.perf_counter()
                await scheduler.claim_host(conn, server_id, TINY)
                latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(caller(servers[i::callers]) for i in range(callers)))
    return latencies


async def explain_decision(
    conn: Conn, scheduler: Scheduler, server_id: uuid.UUID, analyze: str
) -> list[Any]:
    """EXPLAIN (``analyze``: its options) of the decision for ``server_id``, executed in a
    transaction that is rolled back: the database is as before."""
    sql, values = scheduler.placement_statement(server_id, TINY, (), skip_locked=True)
    tx = conn.transaction()
    await tx.start()
    try:
        return [r[0] for r in await conn.fetch(f"EXPLAIN ({analyze}) {sql}", *values)]
    finally:
        await tx.rollback()


async def server_side_times(
    conn: Conn, scheduler: Scheduler, server_id: uuid.UUID, runs: int
) -> list[float]:
    """Planning + execution time of the decision inside PostgreSQL (no round trip, no
    client): what a decision costs the database, whatever the machine's load does to the
    client's view of it."""
    times = []
    for _ in range(runs):
        plan = json.loads(
            (await explain_decision(conn, scheduler, server_id, "ANALYZE, FORMAT JSON"))[0]
        )
        times.append((plan[0]["Planning Time"] + plan[0]["Execution Time"]) / 1000)
    return times


async def bench_scheduler(args: argparse.Namespace) -> None:
    log(f"== 1. scheduler decision at {args.hosts} hosts (claim called directly) ==")
    name, url = await create_database(args.admin_database_url)
    try:
        pool: asyncpg.Pool = await asyncpg.create_pool(url, min_size=1, max_size=8)
        try:
            async with pool.acquire() as conn:
                await insert_hosts(conn, args.hosts)
                samples = min(args.decisions, args.hosts * SLOTS_PER_HOST // 2)
                one = await insert_waiting_servers(conn, samples)
                many = await insert_waiting_servers(conn, samples)
                probe = (await insert_waiting_servers(conn, 1))[0]
            scheduler = scheduler_for_bench()
            await timed_claims(pool, scheduler, one[:20], 1)  # warm: statements prepared
            single = await timed_claims(pool, scheduler, one[20:], 1)
            async with pool.acquire() as conn:  # half the slots taken
                inside = await server_side_times(conn, scheduler, probe, 200)
                plan = await explain_decision(conn, scheduler, probe, "ANALYZE, BUFFERS")
            racing = await timed_claims(pool, scheduler, many, args.conductors)
            overcommitted = await pool.fetchval(
                "SELECT count(*) FROM compute_hosts WHERE ram_mb_used > ram_mb"
                " OR vcpus_used > vcpus OR disk_gb_used > disk_gb"
            )
        finally:
            await pool.close()
    finally:
        await drop_database(args.admin_database_url, name)
    log(f"  inside PostgreSQL (plan + execute, 200 runs): {p50_p99(inside)}")
    log(f"  seen by 1 caller:  {len(single)} decisions  {p50_p99(single)}")
    log(f"  seen by {args.conductors} callers at once: {len(racing)} decisions  {p50_p99(racing)}")
    log(f"  overcommitted hosts after {len(one) + len(racing)} claims: {overcommitted}")
    log("  plan of one decision (half the slots taken):")
    for line in plan:
        log(f"    {line}")


def scheduler_for_bench() -> Scheduler:
    return Scheduler(ratios=Ratios(1.0, 1.0, 1.0), subset_size=3)


# --- the cluster of processes ------------------------------------------------------------


class Cluster:
    """``stratus`` processes of one deployment: log files in a temporary directory."""

    def __init__(self, args: argparse.Namespace, database_url: str) -> None:
        self.database_url = database_url
        self.tmp = Path(tempfile.mkdtemp(prefix="stratus-scale-"))
        self.prefix = f"scale-{uuid.uuid4().hex[:8]}"
        self.ports = [free_port() for _ in range(2)]
        self.env = {
            **os.environ,
            "STRATUS_DATABASE_URL": database_url,
            "STRATUS_AMQP_URL": args.amqp_url,
            "STRATUS_AMQP_PREFIX": self.prefix,
            # gateways seal admin passwords, agents open them: one key for all the roles
            "STRATUS_MESSAGE_KEY": sealing.generate_key(),
            "STRATUS_DATA_DIR": str(self.tmp),
            "STRATUS_LOG_LEVEL": "WARNING",
            "STRATUS_DB_POOL_MAX": "8",
            "STRATUS_RATE_LIMITS": "",
            "STRATUS_QUOTA_INSTANCES": "-1",
            "STRATUS_QUOTA_CORES": "-1",
            "STRATUS_QUOTA_RAM_MB": "-1",
            "STRATUS_CPU_ALLOCATION_RATIO": "1.0",
            "STRATUS_RAM_ALLOCATION_RATIO": "1.0",
            "STRATUS_DISK_ALLOCATION_RATIO": "1.0",
        }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.ports]

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        out = (self.tmp / f"{name}.log").open("wb")
        self.processes[name] = subprocess.Popen(
            [STRATUS, *args],
            env={**self.env, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def start_gateway(self, index: int) -> None:
        self.start(f"api-{index}", "api", env={"STRATUS_API_PORT": str(self.ports[index])})

    def stop(self, name: str) -> None:
        process = self.processes.pop(name)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.stop(name)

    def pids(self, prefix: str) -> list[int]:
        return [p.pid for n, p in self.processes.items() if n.startswith(prefix)]

    def meter(self, conn: asyncpg.Connection) -> CpuMeter:
        roles = {
            "gateways": self.pids("api"),
            "conductors": self.pids("conductor"),
            "simulated agents": self.pids("agents"),
        }
        return CpuMeter({k: v for k, v in roles.items() if v}, conn)

    def check_alive(self) -> None:
        dead = [name for name, p in self.processes.items() if p.poll() is not None]
        if dead:
            raise SystemExit(f"{', '.join(dead)} exited; see the logs in {self.tmp}")

    async def logged(self, name: str, text: str) -> bool:
        return text in (self.tmp / f"{name}.log").read_text(errors="replace")

    def log_tail(self, name: str, lines: int = 20) -> str:
        path = self.tmp / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


async def delete_topology(amqp_url: str, prefix: str, hosts: Sequence[str]) -> None:
    """Every queue and exchange of the deployment (deleting an absent queue is no error)."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        queues = [CONDUCTOR, REPORTS, HEARTBEATS, "dead", *(compute_queue(h) for h in hosts)]
        for queue in queues:
            await channel.queue_delete(f"{prefix}.{queue}")
        for exchange in (prefix, f"{prefix}.dlx"):
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.exchange_delete(exchange)
    finally:
        await connection.close()


async def wait_until(
    check: Callable[[], Awaitable[bool]], what: str, cluster: Cluster, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        cluster.check_alive()
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}; logs in {cluster.tmp}")
        await asyncio.sleep(0.2)


async def serving(session: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with session.get(f"{url}/") as response:
            return response.status == 200
    except aiohttp.ClientError:
        return False


async def bench_idle(conn: asyncpg.Connection, cluster: Cluster, args: argparse.Namespace) -> None:
    """What the simulated cluster costs doing nothing: heartbeats (a jittered 7.5-10 s
    apart, the default interval) and the agents' periodic power-state reports."""
    log(f"== the idle cluster for {args.idle_seconds:.0f} s: {args.hosts} hosts heartbeating ==")
    meter = cluster.meter(conn)
    await meter.start()
    await asyncio.sleep(args.idle_seconds)
    fresh = await conn.fetchval(
        "SELECT count(*) FROM compute_hosts WHERE last_heartbeat > now() - interval '10 s'"
    )
    log(
        f"  hosts heartbeaten within 10 s: {fresh} of {args.hosts} "
        f"(about {args.hosts / 8.75:.0f} heartbeats/s)"
    )
    await meter.report("the idle cluster")


# --- 2-4. boots --------------------------------------------------------------------------


def headers(tenant: str, user: str = "bench") -> dict[str, str]:
    return {"X-Auth-Token": f"{user}:{tenant}"}


async def post_server(session: aiohttp.ClientSession, url: str, name: str) -> uuid.UUID:
    async with session.post(
        f"{url}/v2/{BOOT_TENANT}/servers",
        json={"server": {"name": name, "imageRef": IMAGE, "flavorRef": "1"}},
        headers=headers(BOOT_TENANT),
    ) as response:
        if response.status != 202:
            raise SystemExit(f"create failed: {response.status} {await response.text()}")
        return uuid.UUID((await response.json())["server"]["id"])


async def post_many(
    session: aiohttp.ClientSession, urls: Sequence[str], count: int, in_flight: int, tag: str
) -> list[uuid.UUID]:
    """POST ``count`` servers, ``in_flight`` at a time, spread over the gateways."""
    slots = asyncio.Semaphore(in_flight)

    async def one(i: int) -> uuid.UUID:
        async with slots:
            return await post_server(session, urls[i % len(urls)], f"{tag}-{i}")

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def unsettled(conn: asyncpg.Connection, ids: Sequence[uuid.UUID]) -> int:
    count: int = await conn.fetchval(
        """SELECT count(*) FROM servers WHERE id = ANY($1::uuid[])
              AND (vm_state = 'building' OR task_state IS NOT NULL)""",
        list(ids),
    )
    return count


@dataclass
class BootRun:
    seconds: float
    ids: list[uuid.UUID]


async def boot_and_settle(
    session: aiohttp.ClientSession,
    conn: asyncpg.Connection,
    cluster: Cluster,
    urls: Sequence[str],
    count: int,
    in_flight: int,
    tag: str,
) -> BootRun:
    """Boot ``count`` servers and wait until none of them builds any more."""
    started = time.perf_counter()
    ids = await post_many(session, urls, count, in_flight, tag)

    async def settled() -> bool:
        return await unsettled(conn, ids) == 0

    await wait_until(settled, f"{count} boots to settle", cluster, max(120.0, count / 5))
    return BootRun(time.perf_counter() - started, ids)


async def outcome(conn: asyncpg.Connection, ids: Sequence[uuid.UUID]) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT vm_state, count(*) AS n FROM servers WHERE id = ANY($1::uuid[]) GROUP BY 1",
        list(ids),
    )
    return {r["vm_state"]: r["n"] for r in rows}


async def bench_conductor_scaling(
    session: aiohttp.ClientSession, conn: asyncpg.Connection, cluster: Cluster, count: int
) -> list[uuid.UUID]:
    log(f"== 2. boots/s with 1 vs 2 conductor processes ({count} boots each) ==")
    booted: list[uuid.UUID] = []
    for conductors in (1, 2):
        if conductors == 2:
            cluster.start("conductor-2", "conductor")
            await asyncio.sleep(2)  # connected and consuming
        meter = cluster.meter(conn)
        await meter.start()
        async with busy_queries(cluster.database_url):
            run = await boot_and_settle(
                session, conn, cluster, cluster.urls, count, 64, f"scale-{conductors}"
            )
        booted += run.ids
        log(
            f"  {conductors} conductor(s): {count} boots in {run.seconds:.1f} s = "
            f"{count / run.seconds:.0f} boots/s  {await outcome(conn, run.ids)}"
        )
        await meter.report(f"{conductors} conductor(s)")
    return booted


async def bench_e2e_latency(
    session: aiohttp.ClientSession, conn: asyncpg.Connection, url: str, samples: int
) -> list[uuid.UUID]:
    log(f"== 3. end-to-end scheduling latency ({samples} boots, one at a time) ==")
    to_host: list[float] = []
    to_active: list[float] = []
    ids = []
    for i in range(samples):
        started = time.perf_counter()
        server_id = await post_server(session, url, f"e2e-{i}")
        ids.append(server_id)
        placed = None
        while True:
            row = await conn.fetchrow("SELECT host, vm_state FROM servers WHERE id = $1", server_id)
            assert row is not None
            if placed is None and row["host"] is not None:
                placed = time.perf_counter() - started
            if row["vm_state"] != "building":
                break
            await asyncio.sleep(0.002)
        to_host.append(placed if placed is not None else float("nan"))
        to_active.append(time.perf_counter() - started)
    log(f"  POST -> host chosen: {p50_p99(to_host)}")
    log(f"  POST -> ACTIVE:      {p50_p99(to_active)}")
    return ids


async def delete_all(
    session: aiohttp.ClientSession,
    conn: asyncpg.Connection,
    cluster: Cluster,
    ids: Sequence[uuid.UUID],
) -> None:
    """Delete servers through the API (their hosts give the room back) and wait."""
    slots = asyncio.Semaphore(64)

    async def one(i: int, server_id: uuid.UUID) -> None:
        url = cluster.urls[i % len(cluster.urls)]
        async with (
            slots,
            session.delete(
                f"{url}/v2/{BOOT_TENANT}/servers/{server_id}", headers=headers(BOOT_TENANT)
            ) as response,
        ):
            if response.status not in (204, 404):
                raise SystemExit(f"delete failed: {response.status} {await response.text()}")

    await asyncio.gather(*(one(i, s) for i, s in enumerate(ids)))

    async def room_back() -> bool:
        busy: int = await conn.fetchval("SELECT count(*) FROM compute_hosts WHERE vcpus_used > 0")
        live: int = await conn.fetchval(
            "SELECT count(*) FROM servers WHERE deleted_at IS NULL AND id = ANY($1::uuid[])",
            list(ids),
        )
        return busy == 0 and live == 0

    await wait_until(room_back, "the deleted servers' room", cluster, 300)


async def bench_storm(
    session: aiohttp.ClientSession,
    conn: asyncpg.Connection,
    cluster: Cluster,
    args: argparse.Namespace,
) -> int:
    log(
        f"== 4. {args.boots} boots into {args.hosts} tight hosts ({SLOTS_PER_HOST} m1.tiny each): "
        f"{args.conductors} conductors, {len(cluster.urls)} gateways, 1 simulate process =="
    )
    meter = cluster.meter(conn)
    await meter.start()
    async with busy_queries(cluster.database_url):
        run = await boot_and_settle(
            session, conn, cluster, cluster.urls, args.boots, args.in_flight, "storm"
        )
    states = await outcome(conn, run.ids)
    over = await conn.fetchval(
        """SELECT count(*) FROM compute_hosts
            WHERE vcpus_used > vcpus OR ram_mb_used > ram_mb OR disk_gb_used > disk_gb"""
    )
    crowded = await conn.fetchval(
        """SELECT count(*) FROM (SELECT host FROM servers WHERE deleted_at IS NULL
              AND host IS NOT NULL GROUP BY host HAVING count(*) > $1) c""",
        SLOTS_PER_HOST,
    )
    drift = await conn.fetchval(
        """SELECT count(*) FROM (SELECT h.name FROM compute_hosts h
              LEFT JOIN servers s ON s.host = h.name AND s.deleted_at IS NULL
             GROUP BY h.name, h.ram_mb_used
            HAVING h.ram_mb_used <> COALESCE(sum(s.ram_mb), 0)) d"""
    )
    full = await conn.fetchval(
        "SELECT count(*) FROM compute_hosts WHERE ram_mb_used = ram_mb AND name LIKE $1",
        f"{SIM_PREFIX}-%",
    )
    log(
        f"  all settled after {run.seconds:.1f} s: {args.boots / run.seconds:.0f} boots/s"
        f"  outcome {states}"
    )
    log(f"  hosts full: {full} of {args.hosts}")
    log(f"  overcommitted hosts: {over} (usage > capacity)  {crowded} (> {SLOTS_PER_HOST} servers)")
    log(f"  hosts whose usage disagrees with their servers: {drift}")
    await meter.report("the boot storm")
    return int(over) + int(crowded)


# --- 5. pages ----------------------------------------------------------------------------


async def insert_project(conn: asyncpg.Connection, tenant: str, count: int) -> None:
    """``count`` ACTIVE servers of ``tenant``, straight into the table (a second each)."""
    await conn.execute(
        """INSERT INTO servers (id, tenant_id, user_id, name, image_id, flavor_id, vcpus,
                                ram_mb, disk_gb, vm_state, power_state, created_at)
           SELECT gen_random_uuid(), $1::text, 'bench', 'page-' || g, $3::uuid, '1', 1, 512, 1,
                  'active', 1, now() - make_interval(secs => g)
             FROM generate_series(1, $2::int) g""",
        tenant,
        count,
        uuid.UUID(IMAGE),
    )
    await conn.execute("ANALYZE servers")


async def walk_pages(session: aiohttp.ClientSession, url: str, tenant: str) -> list[float]:
    """GET /servers/detail?limit=100, then every next page by marker: each page's time."""
    times: list[float] = []
    target: str | None = f"{url}/v2/{tenant}/servers/detail?limit=100"
    while target is not None:
        started = time.perf_counter()
        async with session.get(target, headers=headers(tenant)) as response:
            body = await response.json()
        times.append(time.perf_counter() - started)
        if response.status != 200:
            raise SystemExit(f"GET detail failed: {response.status} {body}")
        links = [link["href"] for link in body.get("servers_links", []) if link["rel"] == "next"]
        target = links[0] if links else None
    return times


def positions(walk: Sequence[float]) -> dict[str, float]:
    """A walk's first, middle and last page times."""
    return {"first": walk[0], "middle": walk[len(walk) // 2], "last": walk[-1]}


async def query_times(
    conn: asyncpg.Connection, tenant: str, depth: int, runs: int = 50
) -> list[float]:
    """The page query alone inside PostgreSQL (plan + execute), ``depth`` servers deep."""
    marker = await conn.fetchval(
        """SELECT id FROM servers WHERE tenant_id = $1 AND deleted_at IS NULL
            ORDER BY created_at DESC, id DESC OFFSET $2 LIMIT 1""",
        tenant,
        depth,
    )
    sql, values = page_query(tenant, marker=marker if depth else None, limit=101)
    times = []
    for _ in range(runs):
        plan = json.loads(await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *values))
        times.append((plan[0]["Planning Time"] + plan[0]["Execution Time"]) / 1000)
    return times


async def bench_pages(
    session: aiohttp.ClientSession, conn: asyncpg.Connection, url: str, big: int
) -> None:
    log(f"== 5. GET /servers/detail page time (limit 100, marker paging): 100 vs {big} ==")
    projects = {"page-100": 100, f"page-{big}": big}
    for tenant, count in projects.items():
        await insert_project(conn, tenant, count)
    for _ in range(2):  # every pooled connection has prepared the statements
        await walk_pages(session, url, BOOT_TENANT)
    cold = {tenant: await walk_pages(session, url, tenant) for tenant in projects}
    warm: dict[str, list[list[float]]] = {tenant: [] for tenant in projects}
    for _ in range(5):  # interleaved, so that the machine's other load hits both alike
        for tenant in projects:
            warm[tenant].append(await walk_pages(session, url, tenant))
    for tenant, count in projects.items():
        log(
            f"  {count:>6} servers, {len(cold[tenant])} page(s): first walk (nothing cached) "
            f"mean {ms(statistics.fmean(cold[tenant]))}  max {ms(max(cold[tenant]))}"
        )
        at = [positions(walk) for walk in warm[tenant]]
        shown = ("first", "middle", "last") if len(cold[tenant]) > 1 else ("first",)
        log(
            "    later walks, median: "
            + "  ".join(f"{p} page {ms(statistics.median(a[p] for a in at))}" for p in shown)
        )
        depth = count // 2 if count > 100 else 0
        log(
            f"    the page query alone in PostgreSQL, {depth} servers deep: "
            f"{p50_p99(await query_times(conn, tenant, depth))}"
        )
    medians = {t: statistics.median(x for walk in warm[t] for x in walk) for t in projects}
    log(
        f"  a page of the {big}-server project takes "
        f"{medians[f'page-{big}'] / medians['page-100']:.2f}x the time of a page of the "
        "100-server one (median of the later walks)"
    )
    await explain_deep_page(conn, f"page-{big}", big)


async def explain_deep_page(conn: asyncpg.Connection, tenant: str, count: int) -> None:
    marker = await conn.fetchval(
        """SELECT id FROM servers WHERE tenant_id = $1 AND deleted_at IS NULL
            ORDER BY created_at DESC, id DESC OFFSET $2 LIMIT 1""",
        tenant,
        count // 2,
    )
    sql, values = page_query(tenant, marker=marker, limit=101)
    log(f"  plan of the page {count // 2} servers deep (the gateway asks limit + 1):")
    for row in await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *values):
        log(f"    {row[0]}")


# --- 6. gateways -------------------------------------------------------------------------


async def read_load(
    session: aiohttp.ClientSession, urls: Sequence[str], tenant: str, seconds: float, clients: int
) -> list[float]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def client(i: int) -> None:
        target = f"{urls[i % len(urls)]}/v2/{tenant}/servers/detail"
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            async with session.get(target, headers=headers(tenant)) as response:
                await response.read()
                if response.status != 200:
                    raise SystemExit(f"GET detail failed: {response.status}")
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(client(i) for i in range(clients)))
    return latencies


async def bench_gateways(
    session: aiohttp.ClientSession,
    conn: asyncpg.Connection,
    cluster: Cluster,
    args: argparse.Namespace,
) -> None:
    log(
        f"== 6. GET /servers/detail (100 servers) throughput, {args.clients} clients, "
        f"1 vs 2 gateway processes =="
    )
    rates: dict[int, list[float]] = {1: [], 2: []}
    for round_ in range(1, args.rounds + 1):  # alternated: the machine's other load drifts
        for gateways in (1, 2):
            urls = cluster.urls[:gateways]
            await read_load(session, urls, "page-100", 1.0, args.clients)  # warm
            meter = cluster.meter(conn)
            await meter.start()
            async with busy_queries(cluster.database_url):
                latencies = await read_load(session, urls, "page-100", args.seconds, args.clients)
            rates[gateways].append(len(latencies) / args.seconds)
            log(
                f"  round {round_}, {gateways} gateway(s): {rates[gateways][-1]:.0f} requests/s"
                f"  {p50_p99(latencies)}"
            )
            await meter.report(f"reads on {gateways} gateway(s)")
    for gateways, measured in rates.items():
        log(f"  {gateways} gateway(s): median {statistics.median(measured):.0f} requests/s")


# --- the run -----------------------------------------------------------------------------


async def start_cluster(cluster: Cluster, args: argparse.Namespace, database_url: str) -> None:
    started = time.monotonic()
    cluster.start(
        "agents",
        *("agent", "--simulate", str(args.hosts), "--simulate-prefix", SIM_PREFIX),
        *("--vcpus", str(TINY.vcpus * SLOTS_PER_HOST)),
        *("--ram-mb", str(TINY.ram_mb * SLOTS_PER_HOST)),
        *("--disk-gb", str(TINY.disk_gb * SLOTS_PER_HOST)),
    )
    cluster.start("conductor-1", "conductor")
    cluster.start_gateway(0)
    cluster.start_gateway(1)
    conn = await asyncpg.connect(database_url)
    try:

        async def hosts_up() -> bool:
            up: int = await conn.fetchval("SELECT count(*) FROM compute_hosts WHERE up")
            return bool(up >= args.hosts)

        await wait_until(hosts_up, f"{args.hosts} simulated hosts", cluster, 300)
    finally:
        await conn.close()
    registered = time.monotonic() - started
    await wait_until(lambda: cluster.logged("agents", "hosts up"), "the agents", cluster, 60)
    agents = cluster.processes["agents"].pid
    rss = psutil.Process(agents).memory_info().rss / 2**20
    log(
        f"== cluster: {args.hosts} simulated hosts registered {registered:.1f} s after start; "
        f"the simulate process holds {rss:.0f} MiB RSS =="
    )
    log("  " + cluster.log_tail("agents", 1))


@contextlib.asynccontextmanager
async def deployment(args: argparse.Namespace) -> AsyncIterator[tuple[Cluster, str]]:
    """A fresh database and a cluster on it; everything removed afterwards, whatever
    happened."""
    name, url = await create_database(args.admin_database_url)
    cluster = Cluster(args, url)
    try:
        yield cluster, url
    finally:
        cluster.stop_all()
        await delete_topology(args.amqp_url, cluster.prefix, host_names(SIM_PREFIX, args.hosts))
        await drop_database(args.admin_database_url, name)
        log(f"(cleaned up: database {name}, AMQP prefix {cluster.prefix}; logs in {cluster.tmp})")


async def bench_cluster(args: argparse.Namespace) -> int:
    async with deployment(args) as (cluster, url):
        await start_cluster(cluster, args, url)
        conn = await asyncpg.connect(url)
        connector = aiohttp.TCPConnector(limit=0)
        try:
            async with aiohttp.ClientSession(connector=connector) as session:

                async def gateways_serving() -> bool:
                    return all([await serving(session, url) for url in cluster.urls])

                await wait_until(gateways_serving, "the gateways", cluster, 60)
                await bench_idle(conn, cluster, args)
                scaled = await bench_conductor_scaling(session, conn, cluster, args.scaling_boots)
                e2e = await bench_e2e_latency(session, conn, cluster.urls[0], args.e2e_samples)
                await delete_all(session, conn, cluster, [*scaled, *e2e])
                for i in range(3, args.conductors + 1):
                    cluster.start(f"conductor-{i}", "conductor")
                await asyncio.sleep(2)
                bad = await bench_storm(session, conn, cluster, args)
                await bench_pages(session, conn, cluster.urls[0], args.page_servers)
                await bench_gateways(session, conn, cluster, args)
        finally:
            await conn.close()
    return bad


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hosts", type=_positive, default=1000, help="simulated hosts")
    parser.add_argument("--boots", type=_positive, default=2000, help="servers in the storm")
    parser.add_argument("--conductors", type=_positive, default=4, help="in the storm (>= 2)")
    parser.add_argument("--in-flight", type=_positive, default=64, help="POSTs at a time")
    parser.add_argument(
        "--scaling-boots", type=_positive, default=300, help="boots per 1-vs-2-conductor run"
    )
    parser.add_argument("--e2e-samples", type=_positive, default=50)
    parser.add_argument("--decisions", type=_positive, default=1000, help="direct claims")
    parser.add_argument("--page-servers", type=_positive, default=10000)
    parser.add_argument("--seconds", type=float, default=10.0, help="read load duration")
    parser.add_argument("--clients", type=_positive, default=16, help="read load clients")
    parser.add_argument("--rounds", type=_positive, default=2, help="1-vs-2-gateway rounds")
    parser.add_argument("--idle-seconds", type=float, default=10.0, help="idle cluster phase")
    parser.add_argument(
        "--admin-database-url",
        default=os.environ.get(
            "STRATUS_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument(
        "--amqp-url",
        default=os.environ.get("STRATUS_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    )
    args = parser.parse_args(argv)
    args.conductors = max(2, args.conductors)
    slots = args.hosts * SLOTS_PER_HOST
    if 2 * args.scaling_boots + args.e2e_samples > slots:
        parser.error("--scaling-boots and --e2e-samples need more room than --hosts give")
    return args


async def main_async(args: argparse.Namespace) -> int:
    log(f"stratus scale benchmark: {psutil.cpu_count()} CPUs, {args.hosts} hosts")
    await bench_scheduler(args)
    return await bench_cluster(args)


def main() -> None:
    args = parse_args()
    os.environ.setdefault("STRATUS_LOG_LEVEL", "WARNING")  # quiet `stratus db upgrade`s
    bad = asyncio.run(main_async(args))
    if bad:
        log(f"FAILED: {bad} overcommitted host(s)")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
