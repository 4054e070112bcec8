"""Builds at the allocator's door, for the tests that run conductors' address allocation
straight on a database (tests/functional/test_addresses.py, test_ipam_concurrency.py):
servers placed on a host and waiting to spawn, as the scheduler leaves them, and the build
step a conductor runs on them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from conductor import ipam
from shared.config import Settings
from shared.db import servers
from shared.db.pool import create_pool
from shared.messages import BuildServer, FlavorSpec, ImageSpec, InstanceSpec
from tests.conftest import IMAGE
from tests.support.databases import fresh_database
from tests.support.sealing import sealed

TENANT = "ipam-project"


def new_server(
    server_id: uuid.UUID, tenant: str = TENANT, name: str = "storm"
) -> servers.NewServer:
    """A server of the tiny flavor (1 vCPU, 512 MB, 1 GB), not placed yet."""
    return servers.NewServer(
        id=server_id,
        tenant_id=tenant,
        user_id="alice",
        name=name,
        image_id=uuid.UUID(IMAGE),
        flavor_id="1",
        vcpus=1,
        ram_mb=512,
        disk_gb=1,
        access_ipv4="",
        access_ipv6="",
        metadata={},
    )


async def spawning(pool: asyncpg.Pool, host: str, count: int) -> list[uuid.UUID]:
    """``count`` servers placed on ``host`` and waiting to spawn, their claim counted on the
    host, as the scheduler leaves them."""
    ids = [uuid.uuid4() for _ in range(count)]
    async with pool.acquire() as conn, conn.transaction():
        for sid in ids:
            await servers.insert(conn, new_server(sid))
        await conn.execute(
            "UPDATE servers SET host = $2, task_state = 'spawning' WHERE id = ANY($1::uuid[])",
            ids,
            host,
        )
        await conn.execute(
            """UPDATE compute_hosts SET vcpus_used = vcpus_used + $2,
                                        ram_mb_used = ram_mb_used + $3,
                                        disk_gb_used = disk_gb_used + $2
                WHERE name = $1""",
            host,
            count,
            512 * count,
        )
    return ids


def build(server_id: uuid.UUID) -> BuildServer:
    """The build command of a server ``spawning`` made."""
    action_id = uuid.uuid4()
    return BuildServer(
        server_id=server_id,
        action_id=action_id,
        admin_pass=sealed(BuildServer, "secret", server_id=server_id, action_id=action_id),
        instance=InstanceSpec(
            server_id=server_id,
            name="storm",
            flavor=FlavorSpec(id="1", name="m1.tiny", vcpus=1, ram_mb=512, disk_gb=1),
            image=ImageSpec(id=uuid.UUID(IMAGE), name="cirros"),
        ),
    )


async def build_on(pool: asyncpg.Pool, server_id: uuid.UUID, networks: str, host: str) -> bool:
    """The conductor's build step after the host claim, as a conductor on ``pool`` runs it:
    the server's addresses on ``networks`` (STRATUS_NETWORKS), False when one is full."""
    settings = Settings.model_validate({"networks": networks})
    async with pool.acquire() as conn:
        return await ipam.allocate_for_build(conn, build(server_id), host, settings)


@asynccontextmanager
async def database_with_host(host: str) -> AsyncIterator[str]:
    """A fresh database (its URL) with one big compute host, ``host``, registered."""
    async with fresh_database() as url:
        conn = await asyncpg.connect(url)
        await conn.execute(
            """INSERT INTO compute_hosts (name, hypervisor_type, hypervisor_uri, vcpus, ram_mb,
                                          disk_gb, vcpus_used, ram_mb_used, disk_gb_used,
                                          last_heartbeat)
               VALUES ($1, 'fake', 'fake://', 1000, 1000000, 100000, 0, 0, 0, now())""",
            host,
        )
        await conn.close()
        yield url


@asynccontextmanager
async def conductor_pools(url: str, count: int) -> AsyncIterator[list[asyncpg.Pool]]:
    """``count`` pools on ``url``: the database connections of as many conductors. Their
    servers are deleted (their addresses with them) and the host's usage zeroed after."""
    made = [await create_pool(url, min_size=1, max_size=8) for _ in range(count)]
    try:
        yield made
    finally:
        await made[0].execute("DELETE FROM servers")
        await made[0].execute(
            "UPDATE compute_hosts SET vcpus_used = 0, ram_mb_used = 0, disk_gb_used = 0"
        )
        for pool in made:
            await pool.close()
