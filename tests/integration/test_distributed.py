"""The system as separate processes over the machine's RabbitMQ and PostgreSQL:
one gateway, one conductor and two compute agents, each its own ``stratus`` process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import aiohttp
import asyncpg
import pytest

from tests.conftest import IMAGE
from tests.support.client import ComputeClient
from tests.support.databases import fresh_database
from tests.support.processes import Processes, free_port, wait_for_hosts, wait_until_answering
from tests.support.rabbitmq import delete_topology, require_rabbitmq, unique_prefix

HOSTS = ["host-a", "host-b"]


class Cluster:
    def __init__(self, url: str, database_url: str, prefix: str, amqp_url: str) -> None:
        self.url = url
        self.database_url = database_url
        self.prefix = prefix
        self.amqp_url = amqp_url


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    amqp_url = await require_rabbitmq()
    prefix = unique_prefix()
    port = free_port()
    async with fresh_database() as database_url:
        processes = Processes(
            tmp_path,
            {
                "STRATUS_DATABASE_URL": database_url,
                "STRATUS_AMQP_URL": amqp_url,
                "STRATUS_AMQP_PREFIX": prefix,
                "STRATUS_API_PORT": str(port),
                "STRATUS_DATA_DIR": str(tmp_path / "data"),
                "STRATUS_HEARTBEAT_INTERVAL_S": "1",
                "STRATUS_LIBVIRT_URI": "test:///default",
                "STRATUS_RATE_LIMITS": "",
                # the best host by free RAM, not one of the best few at random: a random pick
                # put all six servers of the test on one host about one run in thirty
                "STRATUS_SCHEDULER_HOST_SUBSET_SIZE": "1",
            },
        )
        processes.run("db", "upgrade")
        processes.start("conductor", "conductor")
        for host in HOSTS:
            processes.start(host, "agent", "--host", host)
        processes.start("api", "api")
        try:
            await wait_until_answering(f"http://127.0.0.1:{port}")
            await wait_for_hosts(database_url, len(HOSTS))
            yield Cluster(f"http://127.0.0.1:{port}", database_url, prefix, amqp_url)
        except BaseException:
            print(processes.logs())
            raise
        finally:
            processes.stop_all()
            await delete_topology(
                prefix, ["conductor", "reports", "heartbeats", *(f"compute.{h}" for h in HOSTS)]
            )


async def _placement(database_url: str) -> dict[str, tuple[int, int]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT name, ram_mb_used, vcpus_used FROM compute_hosts")
    finally:
        await conn.close()
    return {r["name"]: (r["ram_mb_used"], r["vcpus_used"]) for r in rows}


async def _servers_by_host(database_url: str) -> dict[str, int]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT host, count(*) AS n FROM servers WHERE deleted_at IS NULL GROUP BY host"
        )
    finally:
        await conn.close()
    return {r["host"]: r["n"] for r in rows}


async def _queues_exist(cluster: Cluster, names: list[str]) -> bool:
    connection = await aio_pika.connect(cluster.amqp_url)
    try:
        for name in names:
            channel = await connection.channel()
            await channel.declare_queue(f"{cluster.prefix}.{name}", passive=True)
    except aio_pika.exceptions.ChannelClosed:
        return False
    finally:
        await connection.close()
    return True


async def test_servers_booted_over_http_land_on_both_hosts_and_delete_frees_them(
    cluster: Cluster,
) -> None:
    assert await _queues_exist(cluster, ["conductor", "reports", "compute.host-a"])
    async with aiohttp.ClientSession() as session:
        api = ComputeClient(session, cluster.url, "integration", "alice")
        replies = await asyncio.gather(*(api.create_server(f"vm{i}", IMAGE) for i in range(6)))
        assert [r.status for r in replies] == [202] * 6
        ids = [r.body["server"]["id"] for r in replies]
        servers = await asyncio.gather(*(api.wait_for_status(i, "ACTIVE") for i in ids))

        assert set(await _servers_by_host(cluster.database_url)) == set(HOSTS)
        assert len({s["hostId"] for s in servers}) == 2
        used = await _placement(cluster.database_url)
        assert sum(ram for ram, _ in used.values()) == 6 * 512

        for server_id in ids:
            assert (await api.delete(f"/servers/{server_id}")).status == 204
        await asyncio.gather(*(api.wait_for_status(i, "DELETED") for i in ids))
        assert await _placement(cluster.database_url) == {h: (0, 0) for h in HOSTS}
