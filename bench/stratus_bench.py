#!/usr/bin/env python3
"""Benchmark Stratus end to end and print one table.

Starts the system in its own process(es) on a fresh database, then measures from this process:

  (a) GET /servers/detail of a project with 100 servers: requests/s, p50/p99 latency, beside
      the trivial version document GET / measured in the same run (slices of each in turn,
      so that other work on the machine weighs on both alike): the ratio of the two is the
      figure to compare between runs, the absolute rates depend on the machine's load;
  (b) boot throughput: 200 servers created with 20 in flight, time until all are ACTIVE,
      and p50/p99 time-to-ACTIVE per server;
  (c) peak RSS of each Stratus process.

Modes: ``up`` (default) is ``stratus up``: one process, in-process bus. ``distributed`` runs
``stratus api``, ``stratus conductor`` and ``stratus agent`` as separate processes over
RabbitMQ (STRATUS_AMQP_URL, default the local broker). ``--reads-only`` skips (b): only the
list's servers are booted, then (a) is measured (the read path's figures in a minute).

The database is a fresh one on the server named by --admin-database-url (default the local
PostgreSQL), dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from shared import sealing  # noqa: E402
from shared.db import seed  # noqa: E402

IMAGE = str(seed.image_id(seed.DEFAULT_IMAGES[0][0]))
STRATUS = str(Path(sys.executable).parent / "stratus")


@dataclass
class Results:
    rows: list[tuple[str, str]] = field(default_factory=list)

    def add(self, name: str, value: str) -> None:
        self.rows.append((name, value))

    def print(self) -> None:
        width = max(len(name) for name, _ in self.rows)
        print()
        print(f"{'metric'.ljust(width)}  value")
        print(f"{'-' * width}  {'-' * 20}")
        for name, value in self.rows:
            print(f"{name.ljust(width)}  {value}")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))
    return ordered[index]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def peak_rss_mib(pid: int) -> float:
    """VmHWM: the most resident memory the process ever had."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Deployment:
    def __init__(self, mode: str, database_url: str, amqp_url: str, driver: str) -> None:
        self.mode = mode
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tmp = Path(tempfile.mkdtemp(prefix="stratus-bench-"))
        self.env = {
            **os.environ,
            "STRATUS_DATABASE_URL": database_url,
            "STRATUS_API_PORT": str(self.port),
            "STRATUS_DATA_DIR": str(self.tmp),
            "STRATUS_VIRT_DRIVER": driver,
            "STRATUS_LIBVIRT_URI": "test:///default",
            "STRATUS_HOST_VCPUS": "4096",
            "STRATUS_HOST_RAM_MB": "4194304",
            "STRATUS_HOST_DISK_GB": "1000000",
            "STRATUS_LOG_LEVEL": "WARNING",
            "STRATUS_DB_POOL_MAX": "20",
            # measure the system, not its limits: hundreds of servers in one project
            "STRATUS_RATE_LIMITS": "",
            "STRATUS_QUOTA_INSTANCES": "-1",
            "STRATUS_QUOTA_CORES": "-1",
            "STRATUS_QUOTA_RAM_MB": "-1",
        }
        if mode == "distributed":
            self.env["STRATUS_AMQP_URL"] = amqp_url
            self.env["STRATUS_AMQP_PREFIX"] = f"bench-{uuid.uuid4().hex[:8]}"
            # gateways seal admin passwords, agents open them: one key for all the roles
            self.env["STRATUS_MESSAGE_KEY"] = sealing.generate_key()
        else:
            self.env.pop("STRATUS_AMQP_URL", None)
            self.env.pop("STRATUS_MESSAGE_KEY", None)  # `up` makes its own
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        roles = (
            {"stratus up": ["up"]}
            if self.mode == "up"
            else {
                "stratus conductor": ["conductor"],
                "stratus agent": ["agent", "--host", "bench-host"],
                "stratus api": ["api"],
            }
        )
        for name, args in roles.items():
            log = (self.tmp / f"{args[0]}.log").open("wb")
            self.processes[name] = subprocess.Popen(
                [STRATUS, *args], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )

    def stop(self) -> None:
        for process in self.processes.values():
            process.send_signal(signal.SIGINT)
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


async def wait_ready(session: aiohttp.ClientSession, url: str, database_url: str) -> None:
    deadline = time.monotonic() + 60
    conn = await asyncpg.connect(database_url)
    try:
        while time.monotonic() < deadline:
            try:
                async with session.get(f"{url}/") as response:
                    hosts = await conn.fetchval("SELECT count(*) FROM compute_hosts WHERE up")
                    if response.status == 200 and hosts:
                        return
            except (aiohttp.ClientError, asyncpg.UndefinedTableError):
                pass
            await asyncio.sleep(0.2)
    finally:
        await conn.close()
    raise SystemExit("the system did not come up; see the logs in the data directory")


async def boot_and_wait(
    session: aiohttp.ClientSession, url: str, tenant: str, name: str, poll_s: float
) -> float:
    headers = {"X-Auth-Token": f"bench:{tenant}"}
    started = time.perf_counter()
    async with session.post(
        f"{url}/v2/{tenant}/servers",
        json={"server": {"name": name, "imageRef": IMAGE, "flavorRef": "1"}},
        headers=headers,
    ) as response:
        if response.status != 202:
            raise SystemExit(f"create failed: {response.status} {await response.text()}")
        server_id = (await response.json())["server"]["id"]
    while True:
        async with session.get(f"{url}/v2/{tenant}/servers/{server_id}", headers=headers) as r:
            status = (await r.json())["server"]["status"]
        if status == "ACTIVE":
            return time.perf_counter() - started
        if status == "ERROR":
            raise SystemExit(f"server {server_id} went to ERROR")
        await asyncio.sleep(poll_s)


async def boot_many(
    session: aiohttp.ClientSession, url: str, tenant: str, count: int, in_flight: int
) -> tuple[float, list[float]]:
    """Boot ``count`` servers keeping ``in_flight`` builds going; (total s, per-server s)."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)
    times: list[float] = []

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            times.append(await boot_and_wait(session, url, tenant, f"bench-{i}", 0.01))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return time.perf_counter() - started, times


async def read_load(
    session: aiohttp.ClientSession,
    target: str,
    headers: dict[str, str],
    seconds: float,
    concurrency: int,
) -> list[float]:
    """``concurrency`` clients GET ``target`` back to back for ``seconds``; the latencies."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            async with session.get(target, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    raise SystemExit(f"GET {target} failed: {response.status}")
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def cpu_seconds(pid: int) -> float:
    """User and system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class ReadFigures:
    """Requests served, their latencies and the gateway's CPU time, over the slices of one
    target."""

    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    cpu_s: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    def p(self, percent: float) -> float:
        """A latency percentile in milliseconds."""
        return percentile(self.latencies, percent) * 1000

    @property
    def cpu_ms(self) -> float:
        """The gateway's CPU time per request, in milliseconds: unlike the rate, it hardly
        depends on what else the machine is doing."""
        return self.cpu_s / len(self.latencies) * 1000


async def compare_reads(
    session: aiohttp.ClientSession,
    url: str,
    tenant: str,
    seconds: float,
    concurrency: int,
    gateway_pid: int,
    slices: int = 5,
) -> tuple[ReadFigures, ReadFigures]:
    """``GET /`` and ``GET /v2/{tenant}/servers/detail``, ``seconds`` each, in alternating
    slices: the machine's other load changes by the second, so measured one after the other
    the two rates would not be comparable."""
    root, detail = ReadFigures(), ReadFigures()
    headers = {"X-Auth-Token": f"bench:{tenant}"}
    share = seconds / slices
    for _ in range(slices):
        for figures, target, slice_headers in (
            (root, f"{url}/", {}),
            (detail, f"{url}/v2/{tenant}/servers/detail", headers),
        ):
            cpu_before = cpu_seconds(gateway_pid)
            figures.latencies += await read_load(session, target, slice_headers, share, concurrency)
            figures.cpu_s += cpu_seconds(gateway_pid) - cpu_before
            figures.seconds += share
    return root, detail


def add_read_figures(
    results: Results, list_servers: int, concurrency: int, root: ReadFigures, detail: ReadFigures
) -> None:
    results.add(
        f"GET /servers/detail ({list_servers} servers), {concurrency} clients",
        f"{detail.rate:.0f} requests/s",
    )
    results.add("  latency p50 / p99", f"{detail.p(50):.1f} / {detail.p(99):.1f} ms")
    results.add("  gateway CPU per request", f"{detail.cpu_ms:.3f} ms")
    results.add(f"GET / (version document), {concurrency} clients", f"{root.rate:.0f} requests/s")
    results.add("  latency p50 / p99", f"{root.p(50):.1f} / {root.p(99):.1f} ms")
    results.add("  gateway CPU per request", f"{root.cpu_ms:.3f} ms")
    results.add("servers/detail rate / GET / rate", f"{detail.rate / root.rate:.1%}")
    results.add("GET / CPU / servers/detail CPU (gateway)", f"{root.cpu_ms / detail.cpu_ms:.1%}")


async def create_database(admin_url: str) -> tuple[str, str]:
    name = f"stratus_bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(admin_url)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    head, _, query = admin_url.partition("?")
    url = head.rsplit("/", 1)[0] + f"/{name}" + (f"?{query}" if query else "")
    upgrade = await asyncio.create_subprocess_exec(
        STRATUS,
        "db",
        "upgrade",
        env={**os.environ, "STRATUS_DATABASE_URL": url},
        stdout=asyncio.subprocess.DEVNULL,
    )
    if await upgrade.wait() != 0:
        raise SystemExit("stratus db upgrade failed")
    return name, url


async def drop_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.close()


async def run(args: argparse.Namespace) -> None:
    name, database_url = await create_database(args.admin_database_url)
    if args.driver == "auto":
        args.driver = "libvirt" if importlib.util.find_spec("libvirt") else "fake"
    deployment = Deployment(args.mode, database_url, args.amqp_url, args.driver)
    deployment.start()
    results = Results()
    results.add("mode", f"{args.mode} ({args.driver} driver)")
    connector = aiohttp.TCPConnector(limit=0)
    try:
        async with aiohttp.ClientSession(connector=connector) as session:
            await wait_ready(session, deployment.url, database_url)

            if not args.reads_only:
                total, times = await boot_many(
                    session, deployment.url, "bench-boot", args.boot, args.in_flight
                )
                results.add(
                    f"boot {args.boot} servers, {args.in_flight} in flight: all ACTIVE after",
                    f"{total:.2f} s ({args.boot / total:.0f} servers/s)",
                )
                results.add(
                    "  time to ACTIVE p50 / p99",
                    f"{percentile(times, 50) * 1000:.0f} / {percentile(times, 99) * 1000:.0f} ms",
                )

            await boot_many(session, deployment.url, "bench-list", args.list_servers, 20)
            gateway = deployment.processes["stratus up" if args.mode == "up" else "stratus api"]
            await compare_reads(
                session, deployment.url, "bench-list", 2.0, args.concurrency, gateway.pid
            )
            root, detail = await compare_reads(
                session, deployment.url, "bench-list", args.seconds, args.concurrency, gateway.pid
            )
            add_read_figures(results, args.list_servers, args.concurrency, root, detail)
        for role, process in deployment.processes.items():
            results.add(f"peak RSS {role}", f"{peak_rss_mib(process.pid):.0f} MiB")
    finally:
        deployment.stop()
        await drop_database(args.admin_database_url, name)
    results.print()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--mode", choices=["up", "distributed"], default="up")
    parser.add_argument("--driver", choices=["libvirt", "fake", "auto"], default="auto")
    parser.add_argument(
        "--admin-database-url",
        default=os.environ.get(
            "STRATUS_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="PostgreSQL server on which a fresh database is made for the run",
    )
    parser.add_argument(
        "--amqp-url",
        default=os.environ.get("STRATUS_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    )
    parser.add_argument("--boot", type=int, default=200, help="servers to boot (b)")
    parser.add_argument("--in-flight", type=int, default=20, help="builds in flight (b)")
    parser.add_argument("--list-servers", type=int, default=100, help="servers listed (a)")
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="read load duration of each target (a)"
    )
    parser.add_argument("--concurrency", type=int, default=16, help="read clients (a)")
    parser.add_argument(
        "--reads-only", action="store_true", help="measure (a) only: no boot storm (b)"
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
