"""The system under fault: two gateways, two conductors and three agents, each a ``stratus``
process, over a PostgreSQL server and a RabbitMQ node of the suite's own.

Every role can be killed (SIGKILL, no goodbye) and started again with the same arguments,
and both dependencies can be stopped and started again on the same port and data, so that
after each fault the cluster is whole again for the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg

from shared.config import Settings
from tests.faults.partition import Blackhole
from tests.support.postgres_node import PostgresNode
from tests.support.processes import STRATUS, free_port
from tests.support.rabbitmq_node import RabbitNode
from tests.support.sealing import MESSAGE_KEY

HOSTS = ("h1", "h2", "h3")
GATEWAYS = ("api-1", "api-2")
CONDUCTORS = ("conductor-1", "conductor-2")
#: The agent that reaches RabbitMQ, and the gateway that reaches PostgreSQL, through a proxy
#: the partition tests can cut (tests/faults/partition.py); transparent until then.
PARTITIONED_AGENT = "h3"
PARTITIONED_GATEWAY = "api-2"
#: How long a task may run before the conductor's reaper ends it (STRATUS_TASK_DEADLINE_S).
TASK_DEADLINE_S = 20.0
#: The tasks whose deadline is longer by default (shared/config.py ``task_deadlines``).
LONG_TASKS: tuple[str, ...] = tuple(
    Settings.model_fields["task_deadlines"].get_default(call_default_factory=True)
)


def role_env(database_url: str, amqp_url: str, prefix: str, data_dir: Path) -> dict[str, str]:
    """The settings every role gets: short heartbeats and deadlines so faults heal fast,
    no rate limits or quotas in the way of the load, hosts big enough for all of it."""
    return {
        "STRATUS_DATABASE_URL": database_url,
        "STRATUS_AMQP_URL": amqp_url,
        "STRATUS_AMQP_PREFIX": prefix,
        "STRATUS_MESSAGE_KEY": MESSAGE_KEY,
        "STRATUS_LIBVIRT_URI": "test:///default",
        "STRATUS_RATE_LIMITS": "",
        "STRATUS_HEARTBEAT_INTERVAL_S": "1",
        "STRATUS_HOST_DOWN_AFTER_S": "5",
        "STRATUS_QUOTA_INSTANCES": "-1",
        "STRATUS_QUOTA_CORES": "-1",
        "STRATUS_QUOTA_RAM_MB": "-1",
        "STRATUS_HOST_VCPUS": "256",
        "STRATUS_HOST_RAM_MB": "1048576",
        "STRATUS_HOST_DISK_GB": "100000",
        # every agent reports all its domains this often: how the suite sees each hypervisor
        "STRATUS_POWER_SYNC_INTERVAL_S": "2",
        "STRATUS_DATA_DIR": str(data_dir),
        "STRATUS_DB_POOL_MIN": "1",
        # no /metrics listener: seven roles on one machine would all want the same port
        "STRATUS_METRICS_PORT": "0",
        # the conductor's reaper (ends tasks past their deadline)
        "STRATUS_REAPER_INTERVAL_S": "1",
        "STRATUS_TASK_DEADLINE_S": str(int(TASK_DEADLINE_S)),
        # the same deadline for the tasks that have longer ones by default: the checks' settle
        # window must outlast every deadline in force (tests/faults/checks.py)
        "STRATUS_TASK_DEADLINES": json.dumps(dict.fromkeys(LONG_TASKS, TASK_DEADLINE_S)),
    }


@dataclass
class Role:
    name: str
    args: tuple[str, ...]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [STRATUS, *self.args],
                env={**os.environ, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to ack, nack or close anything."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()


@dataclass
class FaultCluster:
    postgres: PostgresNode
    rabbit: RabbitNode
    prefix: str
    database_url: str
    workdir: Path
    roles: dict[str, Role] = field(default_factory=dict)
    api_ports: dict[str, int] = field(default_factory=dict)
    #: the proxies between a role and a dependency, by role (PARTITIONED_*)
    partitions: dict[str, Blackhole] = field(default_factory=dict)

    @property
    def gateways(self) -> list[str]:
        return [f"http://127.0.0.1:{self.api_ports[name]}" for name in GATEWAYS]

    def add_roles(self) -> None:
        env = role_env(self.database_url, self.rabbit.url, self.prefix, self.workdir / "data")
        routed = self._add_partitions()
        for name in GATEWAYS:
            self.api_ports[name] = free_port()
            self._add(
                name,
                ("api",),
                {**env, **routed.get(name, {}), "STRATUS_API_PORT": str(self.api_ports[name])},
            )
        for name in CONDUCTORS:
            self._add(name, ("conductor",), env)
        for host in HOSTS:
            self._add(host, ("agent", "--host", host), {**env, **routed.get(host, {})})

    def _add_partitions(self) -> dict[str, dict[str, str]]:
        """Start the proxies; the settings that send each partitioned role through its own."""
        to_broker = Blackhole.in_front_of(self.rabbit.url)
        to_database = Blackhole.in_front_of(self.database_url)
        self.partitions = {PARTITIONED_AGENT: to_broker, PARTITIONED_GATEWAY: to_database}
        for proxy in self.partitions.values():
            proxy.start()
        return {
            PARTITIONED_AGENT: {"STRATUS_AMQP_URL": to_broker.route(self.rabbit.url)},
            PARTITIONED_GATEWAY: {"STRATUS_DATABASE_URL": to_database.route(self.database_url)},
        }

    def _add(self, name: str, args: tuple[str, ...], env: dict[str, str]) -> None:
        self.roles[name] = Role(name, args, env, self.workdir / f"{name}.log")

    async def start_all(self) -> None:
        for role in self.roles.values():
            role.start()
        await self.wait_healthy()

    async def wait_healthy(self, timeout_s: float = 60.0) -> None:
        """Both gateways answer and every host has a fresh heartbeat."""
        await asyncio.gather(*(wait_serving(url, timeout_s) for url in self.gateways))
        await wait_hosts_up(self.database_url, HOSTS, timeout_s)

    async def restart(self, name: str, *, down_s: float) -> None:
        """Kill ``name`` with SIGKILL, leave it down ``down_s``, start it again."""
        role = self.roles[name]
        role.kill()
        await asyncio.sleep(down_s)
        role.start()

    def stop_all(self) -> None:
        for role in self.roles.values():
            role.stop()
        for proxy in self.partitions.values():
            proxy.close()

    def logs(self, chars: int = 3000) -> str:
        return "\n".join(
            f"--- {role.log.name} ---\n{role.log.read_text(errors='replace')[-chars:]}"
            for role in self.roles.values()
            if role.log.exists()
        )


async def wait_serving(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while True:
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with session.get(f"{url}/", timeout=aiohttp.ClientTimeout(total=2)) as r:
                    if r.status == 200:
                        return
            if time.monotonic() > deadline:
                raise AssertionError(f"the gateway at {url} never answered")
            await asyncio.sleep(0.2)


async def wait_hosts_up(database_url: str, hosts: tuple[str, ...], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            conn = await asyncpg.connect(database_url, timeout=3)
            try:
                fresh = await conn.fetchval(
                    "SELECT count(*) FROM compute_hosts WHERE up AND name = ANY($1::text[])"
                    " AND last_heartbeat > now() - interval '3 seconds'",
                    list(hosts),
                )
            finally:
                await conn.close()
            if fresh == len(hosts):
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"the hosts {hosts} never all reported in")
        await asyncio.sleep(0.2)


def new_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="stratus-fault-"))
