#!/usr/bin/env python3
"""Soak Stratus: hundreds of concurrent users for minutes, watching errors, latency and memory.

``stratus_bench.py`` measures peak rates on a quiet system; this one looks for what only shows
after a while under a realistic mix: errors under contention, servers that get stuck in a
task state, and processes whose memory keeps growing.

It starts the distributed system as separate processes (``stratus api``, ``stratus conductor``
and two ``stratus agent`` on libvirt's ``test:///default`` hypervisor, or the fake driver
without the binding) on a fresh PostgreSQL database and a fresh RabbitMQ prefix, with quotas
raised so that the load is never refused. Then ``--clients`` users, spread over
``--projects`` projects, each loop until ``--duration`` has passed over one story: create a
server (flavor 1, the seeded image), poll until ACTIVE, list servers and page through their
details, set metadata, reboot or pause/unpause, delete and wait until it is gone. Each
user finishes the story it is in, so no server is left behind on purpose.

Printed at the end: requests and throughput, p50/p95/p99 latency per operation, errors (5xx,
connection errors, unexpected 4xx, servers in ERROR or stuck) apart from expected refusals
(409, 413), servers booted and deleted per second, and for each process its RSS at the start
of steady state (after the first 20 % of the duration, past the warm-up) and at the end, with
every sample (each ``--sample-interval`` s) so a cache filling up to its bound can be told
from a leak, its CPU time and the ERROR lines it logged (failures it recovered from).
Exit status: 0 on a pass; 1 after an error, a process exit or a server left with a task
state; 2 when the system could not be brought up; 130 when interrupted.

Everything is removed afterwards, also on Ctrl-C or SIGTERM: the processes, the database and
the AMQP queues and exchanges. The processes' logs are kept (and their path printed) when the
run failed or a process logged an ERROR.

Run it with ``make soak`` or, for a short smoke check::

    .venv/bin/python bench/soak.py --duration 20 --clients 50
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import math
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import aio_pika.exceptions
import aiohttp
import asyncpg
from stratus_bench import STRATUS, Deployment, drop_database, free_port, percentile

from shared.bus import CONDUCTOR, HEARTBEATS, REPORTS, compute_queue

MIB = 1024 * 1024
HOSTS = ("soak-a", "soak-b")
FLAVOR = "1"
PAGE = 10  # small pages, so that a project's listing has a next page to follow
GONE = "GONE"  # what ``wait_for`` waits for when it waits for a 404
STEADY_FRACTION = 0.2  # the warm-up share of the duration, left out of the RSS growth
# a process whose RSS grew more than both of these during steady state is suspect
GROWTH_SUSPECT_PCT = 25.0
GROWTH_SUSPECT_MIB = 20.0
# ... or was still growing faster than this at the end of a steady state this long at least
STILL_GROWING_MIB_PER_MIN = 2.0
TREND_MIN_S = 60.0


# --- what happened ------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    op: str
    status: int  # 0: no HTTP answer (connection error, timeout)
    latency_s: float
    at_s: float  # when the request started, in seconds since the load began


@dataclass
class Stats:
    """Everything the clients observed; one event loop writes it, so no locking."""

    t0: float = field(default_factory=time.perf_counter)
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    refusals: Counter[str] = field(default_factory=Counter)
    boots: list[tuple[float, float]] = field(default_factory=list)  # (at, create→ACTIVE s)
    deletes: list[tuple[float, float]] = field(default_factory=list)  # (at, DELETE→404 s)

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def record(self, op: str, status: int, started: float) -> None:
        now = time.perf_counter()
        self.samples.append(Sample(op, status, now - started, started - self.t0))

    def error(self, what: str) -> None:
        self.errors.append(f"{self.now():7.1f}s  {what}")


class RequestFailed(Exception):
    """A request got no answer or an unexpected one; already counted as an error."""


class ServerFailed(Exception):
    """A server went to ERROR or did not reach a state in time; already counted."""


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any


# --- one user -----------------------------------------------------------------------------


class User:
    """One simulated user of one project, going through the story again and again the way a
    CLI user would (``nova boot --poll``, ``nova list``, ``nova meta``, ...)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        project: str,
        name: str,
        stats: Stats,
        args: argparse.Namespace,
    ) -> None:
        self.session = session
        self.base = f"{base_url}/v2/{project}"
        self.headers = {"X-Auth-Token": f"{name}:{project}", "Accept": "application/json"}
        self.name = name
        self.stats = stats
        self.poll_s: float = args.poll_interval
        self.wait_timeout_s: float = args.wait_timeout
        self.cycles = 0

    async def call(
        self,
        op: str,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        ok: Collection[int] = (200,),
        refused: Collection[int] = (),
    ) -> Reply:
        """One timed request. ``ok`` and ``refused`` (an expected refusal such as a 409 on
        a state conflict) are returned; any other answer is counted as an error and raised."""
        url = path if path.startswith("http") else f"{self.base}{path}"
        started = time.perf_counter()
        try:
            async with self.session.request(
                method, url, json=body, headers=self.headers
            ) as response:
                status, payload = response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.stats.record(op, 0, started)
            self.stats.error(f"{op} {method} {path}: {exc!r}")
            raise RequestFailed from exc
        self.stats.record(op, status, started)
        if status in ok:
            return Reply(status, json.loads(payload) if payload else None)
        if status in refused:
            self.stats.refusals[f"{op} {status}"] += 1
            return Reply(status, None)
        self.stats.error(f"{op} {method} {path}: HTTP {status} {payload[:200]!r}")
        raise RequestFailed

    async def wait_for(self, server_id: str, wanted: str) -> None:
        """Poll the server until it shows ``wanted`` with no task under way (``GONE``: until
        it answers 404); ERROR or running out of time is an error."""
        deadline = time.monotonic() + self.wait_timeout_s
        ok = (200, 404) if wanted == GONE else (200,)
        while True:
            reply = await self.call("show", "GET", f"/servers/{server_id}", ok=ok)
            if reply.status == 404:
                return
            server = reply.body["server"]
            status = server["status"]
            if status == wanted and server.get("OS-EXT-STS:task_state") is None:
                return
            if status == "ERROR":
                self.stats.error(f"server {server_id} went to ERROR waiting for {wanted}")
                raise ServerFailed
            if time.monotonic() > deadline:
                task = server.get("OS-EXT-STS:task_state")
                self.stats.error(f"server {server_id} stuck in {status}/{task} (not {wanted})")
                raise ServerFailed
            await asyncio.sleep(self.poll_s)

    async def create(self, image: str) -> str | None:
        """The new server's id, or None when the create was refused (over a limit)."""
        name = f"{self.name}-{self.cycles}"
        server = {"name": name, "imageRef": image, "flavorRef": FLAVOR}
        reply = await self.call(
            "create", "POST", "/servers", body={"server": server}, ok=(202,), refused=(409, 413)
        )
        return str(reply.body["server"]["id"]) if reply.status == 202 else None

    async def browse(self) -> None:
        """What a dashboard does: the list, a page of details and the page after it."""
        await self.call("list", "GET", f"/servers?limit={PAGE * 2}")
        reply = await self.call("detail", "GET", f"/servers/detail?limit={PAGE}")
        links = reply.body.get("servers_links", [])
        following = next((link["href"] for link in links if link["rel"] == "next"), None)
        if following:
            await self.call("detail-next", "GET", following)

    async def set_metadata(self, server_id: str) -> None:
        body = {"metadata": {"owner": self.name, "cycle": str(self.cycles)}}
        await self.call(
            "metadata", "POST", f"/servers/{server_id}/metadata", body=body, refused=(409,)
        )

    async def action(self, server_id: str, op: str, body: dict[str, Any], then: str) -> bool:
        """A server action and the wait for its result; False when it was refused (409)."""
        reply = await self.call(
            op, "POST", f"/servers/{server_id}/action", body=body, ok=(202,), refused=(409,)
        )
        if reply.status == 202:
            await self.wait_for(server_id, then)
        return reply.status == 202

    async def power_cycle(self, server_id: str, rng: random.Random) -> None:
        """Half of the time a reboot (soft or hard), else a pause and an unpause."""
        if rng.random() < 0.5:
            kind = rng.choice(["SOFT", "HARD"])
            await self.action(server_id, "reboot", {"reboot": {"type": kind}}, "ACTIVE")
        elif await self.action(server_id, "pause", {"pause": None}, "PAUSED"):
            await self.action(server_id, "unpause", {"unpause": None}, "ACTIVE")

    async def delete(self, server_id: str) -> None:
        """Delete (retrying a refusal while a task ends) and wait until the server is gone."""
        started = time.perf_counter()
        deadline = time.monotonic() + self.wait_timeout_s
        while (await self.delete_once(server_id)).status != 204:
            if time.monotonic() > deadline:
                self.stats.error(f"server {server_id}: DELETE refused until the timeout")
                raise ServerFailed
            await asyncio.sleep(self.poll_s)
        await self.wait_for(server_id, GONE)
        self.stats.deletes.append((self.stats.now(), time.perf_counter() - started))

    async def delete_once(self, server_id: str) -> Reply:
        return await self.call(
            "delete", "DELETE", f"/servers/{server_id}", ok=(204,), refused=(409,)
        )

    async def cycle(self, image: str, rng: random.Random) -> None:
        """One story, from create to gone. A failure half-way is counted where it happened;
        the server is deleted all the same so that it does not linger."""
        self.cycles += 1
        started = time.perf_counter()
        server_id = await self.create(image)
        if server_id is None:
            await asyncio.sleep(1.0)  # refused: back off as a user would
            return
        try:
            await self.wait_for(server_id, "ACTIVE")
            self.stats.boots.append((self.stats.now(), time.perf_counter() - started))
            await self.browse()
            await self.set_metadata(server_id)
            await self.power_cycle(server_id, rng)
        except (RequestFailed, ServerFailed):
            pass
        await self.delete(server_id)

    async def run(self, image: str, stop: asyncio.Event, seed: int, ramp_s: float) -> None:
        """Stories until ``stop``; starts are spread over ``ramp_s`` so that all users do
        not create their first server in the same millisecond."""
        rng = random.Random(seed)
        await asyncio.sleep(rng.uniform(0, ramp_s))
        while not stop.is_set():
            try:
                await self.cycle(image, rng)
            except (RequestFailed, ServerFailed):
                await asyncio.sleep(1.0)


# --- the system under test ----------------------------------------------------------------


class SoakDeployment(Deployment):
    """``stratus_bench``'s distributed deployment with two agents, the same rate limits off
    and big hosts, but finite quotas: the quota check runs, it just never refuses."""

    def __init__(
        self, database_url: str, amqp_url: str, driver: str, clients: int, projects: int
    ) -> None:
        super().__init__("distributed", database_url, amqp_url, driver)
        per_project = 2 * math.ceil(clients / projects) + 10
        self.env.update(
            {
                "STRATUS_QUOTA_INSTANCES": str(per_project),
                "STRATUS_QUOTA_CORES": str(per_project * 8),
                "STRATUS_QUOTA_RAM_MB": str(per_project * 16384),
                "STRATUS_HEARTBEAT_INTERVAL_S": "2",
            }
        )
        self.prefix = self.env["STRATUS_AMQP_PREFIX"]

    def start(self) -> None:
        roles = {"conductor": ["conductor"], "api": ["api"]}
        roles.update({f"agent {host}": ["agent", "--host", host] for host in HOSTS})
        for role, args in roles.items():
            # a /metrics listener of its own: on the default port, all but one would fail
            env = {**self.env, "STRATUS_METRICS_PORT": str(free_port())}
            with self.log_path(role).open("wb") as log:
                self.processes[role] = subprocess.Popen(
                    [STRATUS, *args], env=env, stdout=log, stderr=subprocess.STDOUT
                )

    def log_path(self, role: str) -> Path:
        return self.tmp / f"{role.replace(' ', '-')}.log"

    def logged_errors(self) -> dict[str, int]:
        """ERROR lines each process logged: a failure it recovered from (a retried message,
        say) never reaches a client, yet is worth knowing about after a soak."""
        return {
            role: sum(" ERROR " in line for line in self.log_path(role).open(errors="replace"))
            for role in self.processes
        }

    def dead(self) -> list[str]:
        """Roles whose process has exited: any exit during a soak is a failure."""
        return [
            f"{role} (exit {process.returncode})"
            for role, process in self.processes.items()
            if process.poll() is not None
        ]

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name} ---\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted(self.tmp.glob("*.log"))
        )


class SoakAborted(Exception):
    """The system could not be brought up; nothing was measured."""


async def create_migrated_database(admin_url: str) -> tuple[str, str]:
    """A fresh database with Stratus's schema (name, URL), like ``stratus_bench``'s
    ``create_database`` but dropped again when the migration fails or is interrupted (that
    helper leaves it behind), and with the migration's log shown only on failure."""
    name = f"stratus_soak_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    head, _, query = admin_url.partition("?")
    url = head.rsplit("/", 1)[0] + f"/{name}" + (f"?{query}" if query else "")
    try:
        await upgrade_schema(url)
    except BaseException:
        await drop_database(admin_url, name)
        raise
    return name, url


async def upgrade_schema(database_url: str) -> None:
    upgrade = await asyncio.create_subprocess_exec(
        STRATUS,
        "db",
        "upgrade",
        env={**os.environ, "STRATUS_DATABASE_URL": database_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await upgrade.communicate()
    finally:
        if upgrade.returncode is None:
            upgrade.kill()
    if upgrade.returncode != 0:
        raise SoakAborted(f"stratus db upgrade failed:\n{output.decode(errors='replace')}")


async def wait_until_ready(
    session: aiohttp.ClientSession, deployment: SoakDeployment, database_url: str
) -> None:
    """Load only once the gateway answers and both agents have reported in: a boot before
    that would fail for want of a host, which is not what is measured."""
    deadline = time.monotonic() + 60
    conn = await asyncpg.connect(database_url)
    try:
        while True:
            if dead := deployment.dead():
                raise SoakAborted(f"exited before the load: {', '.join(dead)}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{deployment.url}/") as response:
                    up = await conn.fetchval("SELECT count(*) FROM compute_hosts WHERE up")
                    if response.status == 200 and up >= len(HOSTS):
                        return
            if time.monotonic() > deadline:
                raise SoakAborted("the gateway or the agents did not come up within 60 s")
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def seeded_image(session: aiohttp.ClientSession, url: str) -> str:
    """The id of a seeded image flavor 1 can boot (the smallest minimum disk and RAM), found
    the way a user finds it: in the image list."""
    headers = {"X-Auth-Token": "soak:soak-0"}
    async with session.get(f"{url}/v2/soak-0/images/detail", headers=headers) as response:
        images = (await response.json())["images"]
    usable = [image for image in images if image["status"] == "ACTIVE"]
    if not usable:
        raise SoakAborted(f"no ACTIVE image in GET /images/detail: {images}")
    return str(min(usable, key=lambda image: (image["minDisk"], image["minRam"]))["id"])


async def delete_topology(amqp_url: str, prefix: str) -> None:
    """Remove this run's queues and exchanges from the shared broker; the names are the
    bus's own (shared.bus), so a renamed queue is still found. A failed delete closes its
    channel, hence one channel per delete."""
    queues = [CONDUCTOR, REPORTS, HEARTBEATS, "dead", *(compute_queue(h) for h in HOSTS)]
    connection = await aio_pika.connect(amqp_url)
    try:
        for queue in queues:
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.queue_delete(f"{prefix}.{queue}")
        for exchange in (prefix, f"{prefix}.dlx"):
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.exchange_delete(exchange)
    finally:
        await connection.close()


async def leftovers(database_url: str, settle_s: float) -> tuple[int, list[str]]:
    """Servers not deleted, and those of them still in a task once work under way has had
    ``settle_s`` to end: a task state that does not end is a stuck server."""
    conn = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + settle_s
        while True:
            stuck = await conn.fetch(
                "SELECT id, vm_state, task_state FROM servers"
                " WHERE deleted_at IS NULL AND task_state IS NOT NULL"
            )
            if not stuck or time.monotonic() > deadline:
                break
            await asyncio.sleep(1.0)
        remaining: int = await conn.fetchval(
            "SELECT count(*) FROM servers WHERE deleted_at IS NULL"
        )
    finally:
        await conn.close()
    return remaining, [f"{r['id']} {r['vm_state']}/{r['task_state']}" for r in stuck]


# --- memory and CPU of the processes ------------------------------------------------------


def rss_mib(pid: int) -> float:
    """Resident memory now: psutil where installed, else /proc; NaN for a process that is
    gone, also one that has died but not been reaped yet (a zombie shows 0)."""
    try:
        import psutil
    except ImportError:
        return _proc_status_mib(pid, "VmRSS:")
    try:
        rss = float(psutil.Process(pid).memory_info().rss) / MIB
    except psutil.Error:
        return math.nan
    return rss if rss > 0 else math.nan


def _proc_status_mib(pid: int, key: str) -> float:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return math.nan
    for line in text.splitlines():
        if line.startswith(key):
            return int(line.split()[1]) / 1024
    return math.nan


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time so far (/proc/<pid>/stat): shows who had the cores."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class RssLog:
    """RSS (MiB) of every process at fixed points of the load, keyed by seconds into it."""

    pids: dict[str, int]
    samples: dict[float, dict[str, float]] = field(default_factory=dict)

    def take(self, at: float) -> None:
        self.samples[at] = {role: rss_mib(pid) for role, pid in self.pids.items()}

    def series(self, role: str, since: float = 0.0) -> list[tuple[float, float]]:
        """(seconds, MiB) of one process from ``since`` on, leaving out a process gone."""
        return [
            (at, rss[role])
            for at, rss in self.samples.items()
            if at >= since and not math.isnan(rss[role])
        ]


def sample_points(duration: float, interval: float) -> list[float]:
    """Every ``interval`` s, plus exactly the start of steady state and the end, so that
    the growth compares the same two moments however the interval falls."""
    points = {0.0, duration * STEADY_FRACTION, duration}
    points.update(interval * i for i in range(1, math.ceil(duration / interval)))
    return sorted(points)


async def sample_rss(log: RssLog, stats: Stats, points: list[float]) -> None:
    for point in points:
        await asyncio.sleep(max(0.0, point - stats.now()))
        log.take(point)


# --- the load -----------------------------------------------------------------------------


@dataclass
class Run:
    stats: Stats
    rss: RssLog
    cpu_s: dict[str, float]
    drain_s: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    client_cpu_s: float


async def run_load(
    session: aiohttp.ClientSession,
    deployment: SoakDeployment,
    image: str,
    args: argparse.Namespace,
) -> Run:
    """The users for ``--duration``, then each finishes the story it is in (at most
    ``--drain-timeout``; a user still busy after that is cancelled and counted an error)."""
    pids = {role: process.pid for role, process in deployment.processes.items()}
    cpu_before = {role: cpu_seconds(pid) for role, pid in pids.items()}
    load_before, client_cpu = os.getloadavg(), time.process_time()
    stats = Stats()
    rss = RssLog(pids)
    sampler = asyncio.create_task(
        sample_rss(rss, stats, sample_points(args.duration, args.sample_interval))
    )
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(user.run(image, stop, seed, min(10.0, args.duration * 0.1)))
        for seed, user in enumerate(make_users(session, deployment.url, stats, args))
    ]
    try:
        await sampler
        stop.set()
        done, pending = await asyncio.wait(tasks, timeout=args.drain_timeout)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, sampler, return_exceptions=True)
    note_unfinished(stats, done, pending)
    return Run(
        stats=stats,
        rss=rss,
        cpu_s={role: cpu_seconds(pid) - cpu_before[role] for role, pid in pids.items()},
        drain_s=stats.now() - args.duration,
        load_before=load_before,
        load_after=os.getloadavg(),
        client_cpu_s=time.process_time() - client_cpu,
    )


def make_users(
    session: aiohttp.ClientSession, url: str, stats: Stats, args: argparse.Namespace
) -> list[User]:
    """Users dealt round-robin over the projects, so no project's quota is the limit."""
    return [
        User(session, url, f"soak-{i % args.projects}", f"user{i}", stats, args)
        for i in range(args.clients)
    ]


def note_unfinished(
    stats: Stats, done: Collection[asyncio.Task[None]], pending: Collection[asyncio.Task[None]]
) -> None:
    """A user that crashed (a bug here, or an answer of the wrong shape) or did not end its
    story within the drain timeout is an error: it may have left a server behind."""
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            stats.error(f"a user crashed: {task.exception()!r}")
    if pending:
        stats.error(f"{len(pending)} users had not finished their story at the drain timeout")


# --- the report ---------------------------------------------------------------------------

OPS = ["create", "show", "list", "detail", "detail-next", "metadata", "reboot", "pause"]
OPS += ["unpause", "delete"]


@dataclass
class Report:
    args: argparse.Namespace
    run: Run
    driver: str
    remaining: int
    stuck: list[str]
    dead: list[str]
    logged_errors: dict[str, int]

    @property
    def errors(self) -> list[str]:
        return [f"process exited: {d}" for d in self.dead] + self.run.stats.errors

    @property
    def passed(self) -> bool:
        return not self.errors and not self.stuck

    def print(self) -> None:
        for section in (
            self.header,
            self.requests,
            self.latencies,
            self.servers,
            self.failures,
            self.processes,
        ):
            print()
            print("\n".join(section()))
        print()
        print(self.verdict())

    def header(self) -> list[str]:
        a, r = self.args, self.run
        return [
            f"Stratus soak: {a.clients} clients over {a.projects} projects, {a.duration:.0f} s"
            f" of load + {r.drain_s:.1f} s drain, {a.connections} connections,"
            f" poll every {a.poll_interval} s (the resolution of the lifecycle times)",
            f"system: 1 gateway, 1 conductor, 2 agents ({self.driver} driver), PostgreSQL"
            " and RabbitMQ on this machine",
            f"machine: {os.cpu_count()} CPUs; load average (1/5/15 min)"
            f" {_loads(r.load_before)} before, {_loads(r.load_after)} after;"
            f" this load generator used {r.client_cpu_s:.0f} CPU s"
            f" ({r.client_cpu_s / (a.duration + r.drain_s) * 100:.0f} % of a core)",
        ]

    def requests(self) -> list[str]:
        samples, duration = self.run.stats.samples, self.args.duration
        in_window = sum(1 for s in samples if s.at_s < duration)
        statuses = Counter(s.status for s in samples)
        return [
            f"requests: {len(samples)} in total, {in_window} during the load:"
            f" {in_window / duration:.1f} req/s"
            f" ({len(samples) / (duration + self.run.drain_s):.1f} req/s with the drain)",
            "status codes: "
            + ", ".join(f"{code or 'no answer'}: {n}" for code, n in sorted(statuses.items())),
        ]

    def latencies(self) -> list[str]:
        by_op: dict[str, list[float]] = {}
        for sample in self.run.stats.samples:
            by_op.setdefault(sample.op, []).append(sample.latency_s * 1000)
        lines = [f"{'latency (ms)':<22}{'count':>8}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}"]
        for op in [*OPS, *sorted(set(by_op) - set(OPS))]:
            if op in by_op:
                lines.append(_latency_row(op, by_op[op]))
        for name, events in (
            ("boot: create→ACTIVE", self.run.stats.boots),
            ("delete: DELETE→404", self.run.stats.deletes),
        ):
            if events:
                lines.append(_latency_row(name, [seconds * 1000 for _, seconds in events]))
        return lines

    def servers(self) -> list[str]:
        stats, duration = self.run.stats, self.args.duration
        booted = sum(1 for at, _ in stats.boots if at < duration)
        deleted = sum(1 for at, _ in stats.deletes if at < duration)
        return [
            f"servers booted: {len(stats.boots)} ({booted / duration:.2f}/s during the load)",
            f"servers deleted: {len(stats.deletes)} ({deleted / duration:.2f}/s during the load)",
            f"servers left at the end: {self.remaining} not deleted,"
            f" {len(self.stuck)} stuck with a task state",
            *(f"  stuck: {s}" for s in self.stuck[:10]),
        ]

    def failures(self) -> list[str]:
        refusals = self.run.stats.refusals
        lines = [
            f"expected refusals: {sum(refusals.values())}"
            + "".join(f"; {what}: {n}" for what, n in sorted(refusals.items())),
            f"errors (5xx, no answer, unexpected 4xx, ERROR/stuck servers): {len(self.errors)}",
        ]
        lines += [f"  {error}" for error in self.errors[:15]]
        if len(self.errors) > 15:
            lines.append(f"  ... and {len(self.errors) - 15} more")
        return lines

    def processes(self) -> list[str]:
        steady_at = self.args.duration * STEADY_FRACTION
        lines = [
            f"{'process':<16}{'RSS@' + format(steady_at, '.0f') + 's':>11}{'RSS end':>10}"
            f"{'growth':>10}{'growth%':>9}{'slope/min':>11}{'late/min':>10}{'max':>8}"
            f"{'CPU s':>8}{'log ERRORs':>12}   (RSS in MiB)"
        ]
        for role in self.run.rss.pids:
            lines.append(self.process_row(role))
        return lines + self.timeline()

    def timeline(self) -> list[str]:
        """Every RSS sample: growth that levels off (a cache filling up to its bound) reads
        differently from growth that keeps going (a leak), which no two numbers show."""
        samples = self.run.rss.samples
        lines = ["RSS timeline (MiB) at s " + " ".join(f"{at:>6.0f}" for at in samples)]
        for role in self.run.rss.pids:
            values = " ".join(f"{rss[role]:>6.1f}" for rss in samples.values())
            lines.append(f"  {role:<21} {values}")
        return lines

    def process_row(self, role: str) -> str:
        m = self.memory(role)
        return (
            f"{role:<16}{m.steady:>11.1f}{m.end:>10.1f}{m.growth:>+10.1f}{m.growth_pct:>+8.1f}%"
            f"{m.slope:>+11.2f}{m.late_slope:>+10.2f}{m.peak:>8.1f}"
            f"{self.run.cpu_s[role]:>8.0f}{self.logged_errors[role]:>12}"
        )

    def memory(self, role: str) -> Memory:
        steady_at = self.args.duration * STEADY_FRACTION
        series = self.run.rss.series(role, since=steady_at)
        late = series[len(series) // 2 :]
        return Memory(
            steady=series[0][1],
            end=series[-1][1],
            peak=max((m for _, m in self.run.rss.series(role)), default=math.nan),
            slope=_slope_mib_per_min(series),
            late_slope=_slope_mib_per_min(late),
        )

    def verdict(self) -> str:
        judge_trend = self.args.duration * (1 - STEADY_FRACTION) >= TREND_MIN_S
        concerns = []
        for role in self.run.rss.pids:
            concern = self.memory(role).concern(judge_trend)
            if concern:
                concerns.append(f"{role} {concern}")
        memory_note = (
            f"RSS to watch: {'; '.join(concerns)}"
            if concerns
            else f"RSS stable (no process grew > {GROWTH_SUSPECT_MIB:.0f} MiB and"
            f" > {GROWTH_SUSPECT_PCT:.0f} % in steady state"
            + (
                f" or still grew > {STILL_GROWING_MIB_PER_MIN:.0f} MiB/min at its end)"
                if judge_trend
                else f"; steady state too short to judge a trend, < {TREND_MIN_S:.0f} s)"
            )
        )
        logged = sum(self.logged_errors.values())
        if logged:
            memory_note += f"; {logged} ERROR lines in the processes' logs (see the logs)"
        if self.passed:
            return f"VERDICT: PASS: 0 errors, no stuck servers; {memory_note}"
        return (
            f"VERDICT: FAIL: {len(self.errors)} errors, {len(self.stuck)} stuck servers;"
            f" {memory_note}"
        )


@dataclass(frozen=True)
class Memory:
    """One process's RSS (MiB) over steady state; slopes in MiB per minute, ``late_slope``
    over the second half of it: whether the process was still growing at the end."""

    steady: float
    end: float
    peak: float
    slope: float
    late_slope: float

    @property
    def growth(self) -> float:
        return self.end - self.steady

    @property
    def growth_pct(self) -> float:
        return _pct(self.growth, self.steady)

    def concern(self, judge_trend: bool) -> str:
        """Why this memory needs a look ("" if it does not): grown a lot, or, in a run long
        enough to tell, still growing when the load ended (a bounded cache levels off)."""
        reasons = []
        if self.growth > GROWTH_SUSPECT_MIB and self.growth_pct > GROWTH_SUSPECT_PCT:
            reasons.append(f"grew {self.growth:+.1f} MiB ({self.growth_pct:+.0f} %)")
        if judge_trend and self.late_slope > STILL_GROWING_MIB_PER_MIN:
            reasons.append(f"still {self.late_slope:+.1f} MiB/min at the end")
        return ", ".join(reasons)


def _pct(part: float, whole: float) -> float:
    """``part`` in percent of ``whole``; NaN when there is no whole (a process gone)."""
    return part / whole * 100 if whole > 0 else math.nan


def _loads(values: tuple[float, float, float]) -> str:
    return "/".join(f"{v:.2f}" for v in values)


def _latency_row(name: str, millis: list[float]) -> str:
    return (
        f"{name:<22}{len(millis):>8}{percentile(millis, 50):>9.1f}"
        f"{percentile(millis, 95):>9.1f}{percentile(millis, 99):>9.1f}{max(millis):>9.1f}"
    )


def _slope_mib_per_min(points: list[tuple[float, float]]) -> float:
    """The trend of RSS over steady state, less fooled by one spike than end minus start."""
    if len(points) < 2:
        return math.nan
    slope, _ = statistics.linear_regression([t for t, _ in points], [m for _, m in points])
    return slope * 60


# --- putting it together ------------------------------------------------------------------


async def drive(deployment: SoakDeployment, database_url: str, args: argparse.Namespace) -> Report:
    """Bring the system up, load it, check what it left and print the report."""
    connector = aiohttp.TCPConnector(limit=args.connections)
    timeout = aiohttp.ClientTimeout(total=args.request_timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await wait_until_ready(session, deployment, database_url)
        image = await seeded_image(session, deployment.url)
        print(f"system up ({deployment.url}, image {image}); loading for {args.duration:.0f} s")
        run = await run_load(session, deployment, image, args)
    remaining, stuck = await leftovers(database_url, settle_s=args.wait_timeout)
    dead = deployment.dead()
    driver = deployment.env["STRATUS_VIRT_DRIVER"]
    report = Report(args, run, driver, remaining, stuck, dead, deployment.logged_errors())
    report.print()
    return report


async def soak(args: argparse.Namespace) -> int:
    """The run with its cleanup: processes, AMQP topology and database go whatever happens
    (SIGTERM is turned into the same cancellation as Ctrl-C so that it cleans up too)."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    name, database_url = await create_migrated_database(args.admin_database_url)
    passed = False
    keep = True  # the processes' logs: wanted when something went wrong, or was logged
    try:
        deployment = SoakDeployment(
            database_url, args.amqp_url, args.driver, args.clients, args.projects
        )
        try:
            deployment.start()
            report = await drive(deployment, database_url, args)
            passed = report.passed
            keep = not passed or any(report.logged_errors.values())
        except SoakAborted:
            print(deployment.logs(), file=sys.stderr)
            raise
        except asyncio.CancelledError:
            keep = False
            raise
        finally:
            deployment.stop()
            await delete_topology(args.amqp_url, deployment.prefix)
            print(f"AMQP queues and exchanges {deployment.prefix}.* deleted", file=sys.stderr)
            remove_or_keep_logs(deployment, keep)
    finally:
        await drop_database(args.admin_database_url, name)
        print(f"cleaned up: processes stopped, database {name} dropped", file=sys.stderr)
    return 0 if passed else 1


def remove_or_keep_logs(deployment: SoakDeployment, keep: bool) -> None:
    if keep:
        print(f"the processes' logs are kept in {deployment.tmp}", file=sys.stderr)
    else:
        shutil.rmtree(deployment.tmp, ignore_errors=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--clients", type=int, default=300, help="concurrent users (default 300)")
    add("--duration", type=float, default=180.0, help="seconds of load (default 180)")
    add("--projects", type=int, default=10, help="projects the users are spread over")
    # a 2-core machine serves no faster with more connections in flight: they would only
    # queue inside the gateway and cost it memory; the rest wait in the client's pool
    add("--connections", type=int, default=32, help="HTTP connection limit (default 32)")
    add("--poll-interval", type=float, default=0.5, help="seconds between status polls")
    add("--wait-timeout", type=float, default=60.0, help="longest wait for a server state")
    add("--request-timeout", type=float, default=60.0, help="longest wait for one answer")
    add("--drain-timeout", type=float, default=120.0, help="longest wait for users to end")
    add("--sample-interval", type=float, default=10.0, help="seconds between RSS samples")
    add("--driver", choices=["libvirt", "fake", "auto"], default="auto")
    add(
        "--admin-database-url",
        default=os.environ.get(
            "STRATUS_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="PostgreSQL server on which the run's database is created and dropped",
    )
    add(
        "--amqp-url",
        default=os.environ.get("STRATUS_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    )
    args = parser.parse_args()
    if args.driver == "auto":
        args.driver = "libvirt" if importlib.util.find_spec("libvirt") else "fake"
    return args


def main() -> None:
    args = parse_args()
    try:
        code = asyncio.run(soak(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; cleaned up", file=sys.stderr)
        code = 130
    except SoakAborted as exc:
        print(f"soak aborted: {exc}", file=sys.stderr)
        code = 2
    sys.exit(code)


if __name__ == "__main__":
    main()
