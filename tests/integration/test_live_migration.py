"""Live migration across separate ``stratus`` processes over RabbitMQ: two compute agents, each
its own process with its own libvirt test hypervisor (``test:///<node file>``), and a server
that moves from one to the other while it runs, and back, and once not (rolled back).

The test hypervisors live inside the agents' processes, so what each holds is seen through
what the agents do: an image of the server is made where it is accounted (the snapshot needs
the domain there), and migrating it back needs the first host to have removed its copy (a
destination refuses a server it has already).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from compute_agent.virt.libvirt import mock_nodes
from tests.conftest import IMAGE
from tests.support.actions import (
    FLAVORS,
    act,
    actions_of,
    host_usage,
    wait_for_image,
    wait_until_action_done,
)
from tests.support.client import ComputeClient
from tests.support.databases import fresh_database
from tests.support.missing import LIBVIRT_BINDING
from tests.support.processes import Processes, free_port, wait_until_answering
from tests.support.rabbitmq import delete_topology, require_rabbitmq, unique_prefix

pytest.importorskip("libvirt", reason=LIBVIRT_BINDING)

HOSTS = ("live-a", "live-b")


@dataclass
class LiveCluster:
    url: str
    database_url: str
    #: each host's hypervisor (``test:///<node file>``)
    uris: dict[str, str]


async def _wait_for_hosts(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        for _ in range(300):
            rows = await conn.fetch("SELECT name, hypervisor_uri FROM compute_hosts WHERE up")
            if {r["name"] for r in rows} >= set(HOSTS):
                return
            await asyncio.sleep(0.1)
        raise AssertionError("the compute agents never registered")
    finally:
        await conn.close()


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[LiveCluster]:
    amqp_url = await require_rabbitmq()
    prefix = unique_prefix()
    port = free_port()
    async with fresh_database() as database_url:
        env = {
            "STRATUS_DATABASE_URL": database_url,
            "STRATUS_AMQP_URL": amqp_url,
            "STRATUS_AMQP_PREFIX": prefix,
            "STRATUS_API_PORT": str(port),
            "STRATUS_DATA_DIR": str(tmp_path / "data"),
            "STRATUS_HEARTBEAT_INTERVAL_S": "1",
            "STRATUS_VIRT_DRIVER": "libvirt",
            "STRATUS_RATE_LIMITS": "",
        }
        uris = {host: mock_nodes.node_uri(tmp_path / "hypervisors", host) for host in HOSTS}
        roles = Processes(tmp_path, env)
        agents = [Processes(tmp_path, {**env, "STRATUS_LIBVIRT_URI": uris[h]}) for h in HOSTS]
        roles.run("db", "upgrade")
        roles.start("conductor", "conductor")
        for host, agent in zip(HOSTS, agents, strict=True):
            agent.start(host, "agent", "--host", host)
        roles.start("api", "api")
        try:
            await wait_until_answering(f"http://127.0.0.1:{port}")
            await _wait_for_hosts(database_url)
            yield LiveCluster(f"http://127.0.0.1:{port}", database_url, uris)
        except BaseException:
            print(roles.logs())
            raise
        finally:
            for processes in (roles, *agents):
                processes.stop_all()
            await delete_topology(
                prefix, ["conductor", "reports", "heartbeats", *(f"compute.{h}" for h in HOSTS)]
            )


@contextmanager
def _unreachable(uri: str) -> Iterator[None]:
    """New connections to the test hypervisor at ``uri`` fail (its node file is gone); its
    own agent's connection goes on working."""
    node = Path(uri.removeprefix("test://"))
    saved = node.read_text()
    node.unlink()
    try:
        yield
    finally:
        node.write_text(saved)


def _live(host: str) -> dict[str, Any]:
    return {"os-migrateLive": {"host": host, "block_migration": False, "disk_over_commit": False}}


async def test_a_server_moves_between_agent_processes_and_a_failed_move_is_rolled_back(
    cluster: LiveCluster,
) -> None:
    pool = await asyncpg.create_pool(cluster.database_url, min_size=1, max_size=2)
    tenant = f"t{uuid.uuid4().hex[:10]}"
    try:
        async with aiohttp.ClientSession() as session:
            api = ComputeClient(session, cluster.url, tenant, "alice")
            admin = ComputeClient(session, cluster.url, tenant, "admin")
            reply = await api.create_server("traveller", IMAGE, "2")
            server_id = reply.body["server"]["id"]
            first = await api.wait_for_status(server_id, "ACTIVE")
            sid = uuid.UUID(server_id)
            source = await pool.fetchval("SELECT host FROM servers WHERE id = $1", sid)
            dest = next(h for h in HOSTS if h != source)
            assert (
                await pool.fetchval(
                    "SELECT hypervisor_uri FROM compute_hosts WHERE name = $1", dest
                )
                == cluster.uris[dest]
            )

            # there, while it runs
            assert (await act(admin, server_id, _live(dest))).status == 202
            await wait_until_action_done(pool, server_id)
            moved = (await api.get(f"/servers/{server_id}")).body["server"]
            assert moved["status"] == "ACTIVE"
            assert moved["hostId"] != first["hostId"]
            assert await host_usage(pool, source) == (0, 0, 0)
            assert await host_usage(pool, dest) == FLAVORS["2"]
            # the domain is on the destination's hypervisor: an image of it can be made there
            image = await act(api, server_id, {"createImage": {"name": "where"}})
            await wait_for_image(api, image.headers["Location"].rsplit("/", 1)[1], "ACTIVE")
            await wait_until_action_done(pool, server_id)

            # and back: the first host removed its copy, or it would refuse to take it again
            assert (await act(admin, server_id, _live(source))).status == 202
            await wait_until_action_done(pool, server_id)
            assert await pool.fetchval("SELECT host FROM servers WHERE id = $1", sid) == source
            assert await host_usage(pool, dest) == (0, 0, 0)

            # the destination's hypervisor no longer answers the source: rolled back
            with _unreachable(cluster.uris[dest]):
                assert (await act(admin, server_id, _live(dest))).status == 202
                await wait_until_action_done(pool, server_id)
            stayed = (await api.get(f"/servers/{server_id}")).body["server"]
            assert stayed["status"] == "ACTIVE"
            assert await pool.fetchval("SELECT host FROM servers WHERE id = $1", sid) == source
            assert await host_usage(pool, source) == FLAVORS["2"]
            assert await host_usage(pool, dest) == (0, 0, 0)
            fault = await pool.fetchval(
                "SELECT message FROM server_faults WHERE server_id = $1 ORDER BY id DESC", sid
            )
            assert "cannot reach the destination's hypervisor" in fault
            assert [a for a in await actions_of(pool, server_id) if a[0] == "os-migrateLive"] == [
                ("os-migrateLive", "success"),
                ("os-migrateLive", "success"),
                ("os-migrateLive", "error"),
            ]

            # it still runs on the source: an image of it is made there
            image = await act(api, server_id, {"createImage": {"name": "home"}})
            await wait_for_image(api, image.headers["Location"].rsplit("/", 1)[1], "ACTIVE")
            await wait_until_action_done(pool, server_id)
            await api.delete_and_wait(server_id)
            assert await host_usage(pool, source) == (0, 0, 0)
    finally:
        await pool.close()
