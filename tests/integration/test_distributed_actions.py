"""Server actions across separate ``stratus`` processes over RabbitMQ: each compute agent is
its own process with its own libvirt test hypervisor, so a resize really moves a domain from
one hypervisor to another."""

from __future__ import annotations

import uuid

import aiohttp
import asyncpg

from tests.conftest import IMAGE
from tests.integration.test_distributed import HOSTS, Cluster, cluster  # noqa: F401 (fixture)
from tests.support.actions import (
    FLAVORS,
    act,
    host_usage,
    wait_for_image,
    wait_until_action_done,
)
from tests.support.client import ComputeClient


async def test_actions_travel_between_the_processes(cluster: Cluster) -> None:  # noqa: F811
    pool = await asyncpg.create_pool(cluster.database_url, min_size=1, max_size=2)
    try:
        async with aiohttp.ClientSession() as session:
            api = ComputeClient(session, cluster.url, f"t{uuid.uuid4().hex[:10]}", "alice")
            server_id = (await api.create_server("traveller", IMAGE)).body["server"]["id"]
            await api.wait_for_status(server_id, "ACTIVE")
            source = await pool.fetchval(
                "SELECT host FROM servers WHERE id = $1", uuid.UUID(server_id)
            )

            for body in ({"reboot": {"type": "HARD"}}, {"changePassword": {"adminPass": "pw"}}):
                assert (await act(api, server_id, body)).status == 202
                await wait_until_action_done(pool, server_id)
            image = await act(api, server_id, {"createImage": {"name": "snap"}})
            await wait_for_image(api, image.headers["Location"].rsplit("/", 1)[1], "ACTIVE")

            assert (await act(api, server_id, {"resize": {"flavorRef": "2"}})).status == 202
            await api.wait_for_status(server_id, "VERIFY_RESIZE")
            dest = next(h for h in HOSTS if h != source)
            assert await host_usage(pool, source) == FLAVORS["1"]
            assert await host_usage(pool, dest) == FLAVORS["2"]
            assert (await act(api, server_id, {"confirmResize": None})).status == 204
            await wait_until_action_done(pool, server_id)
            assert await host_usage(pool, source) == (0, 0, 0)

            await api.delete_and_wait(server_id)
            assert await host_usage(pool, dest) == (0, 0, 0)
            results = await pool.fetch(
                "SELECT action, result FROM actions WHERE server_id = $1 ORDER BY started_at",
                uuid.UUID(server_id),
            )
            assert {r["result"] for r in results} == {"success"}
    finally:
        await pool.close()
