"""Four conductors scheduling at once onto a hundred tight hosts never overcommit one.

Separate ``stratus`` processes over the machine's RabbitMQ: four conductors (competing
consumers of the build queue, each claiming hosts in the database), one ``stratus agent
--simulate 100`` whose hosts have room for exactly two m1.tiny servers each, and a gateway.
More servers are booted than there is room for; at the end every host holds at most what it
has, every slot is taken, and every server is ACTIVE or in ERROR for want of a host (never
stuck in BUILD, never failed for another reason).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from compute_agent.simulation import host_names
from tests.conftest import IMAGE
from tests.support.client import ComputeClient
from tests.support.databases import fresh_database
from tests.support.processes import Processes, free_port, wait_for_hosts, wait_until_answering
from tests.support.rabbitmq import delete_topology, require_rabbitmq, unique_prefix

pytestmark = pytest.mark.integration

HOSTS = 100
CONDUCTORS = 4
#: two m1.tiny (1 vCPU, 512 MB, 1 GB) fill a host, with every allocation ratio at 1
SLOTS_PER_HOST = 2
BOOTS = 260
IN_FLIGHT = 20
NO_VALID_HOST = "No valid host was found"


@dataclass(frozen=True)
class ScaleCluster:
    url: str
    database_url: str


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[ScaleCluster]:
    amqp_url = await require_rabbitmq()
    prefix = unique_prefix()
    port = free_port()
    hosts = host_names("tight", HOSTS)
    async with fresh_database() as database_url:
        processes = Processes(
            tmp_path,
            {
                "STRATUS_DATABASE_URL": database_url,
                "STRATUS_AMQP_URL": amqp_url,
                "STRATUS_AMQP_PREFIX": prefix,
                "STRATUS_API_PORT": str(port),
                "STRATUS_DATA_DIR": str(tmp_path / "data"),
                "STRATUS_RATE_LIMITS": "",
                "STRATUS_QUOTA_INSTANCES": "-1",
                "STRATUS_QUOTA_CORES": "-1",
                "STRATUS_QUOTA_RAM_MB": "-1",
                "STRATUS_CPU_ALLOCATION_RATIO": "1.0",
                "STRATUS_RAM_ALLOCATION_RATIO": "1.0",
                "STRATUS_DISK_ALLOCATION_RATIO": "1.0",
                "STRATUS_DB_POOL_MAX": "5",
                "STRATUS_LOG_LEVEL": "WARNING",
            },
        )
        processes.run("db", "upgrade")
        for i in range(CONDUCTORS):
            processes.start(f"conductor-{i}", "conductor")
        processes.start(
            "agents",
            *("agent", "--simulate", str(HOSTS), "--simulate-prefix", "tight"),
            *("--vcpus", "2", "--ram-mb", "1024", "--disk-gb", "2"),
        )
        processes.start("api", "api")
        try:
            await wait_until_answering(f"http://127.0.0.1:{port}")
            await wait_for_hosts(database_url, HOSTS, timeout_s=60.0)
            yield ScaleCluster(f"http://127.0.0.1:{port}", database_url)
        except BaseException:
            print(processes.logs())
            raise
        finally:
            processes.stop_all()
            await delete_topology(
                prefix, ["conductor", "reports", "heartbeats", *(f"compute.{h}" for h in hosts)]
            )


async def _boot_all(url: str) -> None:
    """POST BOOTS servers, IN_FLIGHT at a time; every one must be accepted."""
    slots = asyncio.Semaphore(IN_FLIGHT)
    async with aiohttp.ClientSession() as session:
        api = ComputeClient(session, url, "scale", "alice")

        async def boot(i: int) -> None:
            async with slots:
                reply = await api.create_server(f"vm-{i}", IMAGE)
            assert reply.status == 202, reply.body

        await asyncio.gather(*(boot(i) for i in range(BOOTS)))


async def _wait_until_settled(conn: asyncpg.Connection, timeout_s: float = 60.0) -> None:
    """Until no server is building (or running any task)."""
    deadline = time.monotonic() + timeout_s
    while await conn.fetchval(
        "SELECT count(*) FROM servers WHERE vm_state = 'building' OR task_state IS NOT NULL"
    ):
        if time.monotonic() > deadline:
            stuck = await conn.fetch(
                "SELECT vm_state, task_state, count(*) FROM servers GROUP BY vm_state, task_state"
            )
            raise AssertionError(f"servers still building after {timeout_s} s: {stuck}")
        await asyncio.sleep(0.25)


async def test_four_conductors_fill_every_slot_of_tight_hosts_and_overcommit_none(
    cluster: ScaleCluster,
) -> None:
    await _boot_all(cluster.url)
    conn = await asyncpg.connect(cluster.database_url)
    try:
        await _wait_until_settled(conn)
        overcommitted = await conn.fetch(
            """SELECT name FROM compute_hosts
                WHERE vcpus_used > vcpus OR ram_mb_used > ram_mb OR disk_gb_used > disk_gb"""
        )
        # what the hosts' usage says agrees with the servers placed on them
        drift = await conn.fetch(
            """SELECT h.name FROM compute_hosts h
                 LEFT JOIN servers s ON s.host = h.name AND s.deleted_at IS NULL
                GROUP BY h.name, h.ram_mb_used
               HAVING h.ram_mb_used <> COALESCE(sum(s.ram_mb), 0)"""
        )
        states = await conn.fetch(
            """SELECT s.vm_state,
                      (SELECT f.message FROM server_faults f WHERE f.server_id = s.id
                        ORDER BY f.id DESC LIMIT 1) AS fault
                 FROM servers s"""
        )
    finally:
        await conn.close()
    assert overcommitted == []
    assert drift == []
    active = [s for s in states if s["vm_state"] == "active"]
    refused = [s for s in states if s["vm_state"] == "error"]
    assert len(active) + len(refused) == BOOTS
    assert all(NO_VALID_HOST in (s["fault"] or "") for s in refused), refused[:3]
    # a claim that loses a race takes another host: a server is refused only when all are full
    assert len(active) == HOSTS * SLOTS_PER_HOST
