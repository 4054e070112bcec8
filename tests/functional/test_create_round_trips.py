"""What a server create costs PostgreSQL in round trips (each is a send and a receive for the
gateway and the database: most of either's CPU per boot), and that what was folded together
still reads and marks what it did one statement at a time (shared/db/creates.py, the sent
marks' group commit)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from api_gateway.compute.api import ComputeAPI
from api_gateway.compute.checks import ratios
from api_gateway.context import RequestContext
from api_gateway.schemas.servers import ServerCreate
from shared.db import creates, flavors, hosts, images, keypairs, quota_overrides
from shared.db.hosts import Resources
from stratus.system import System
from tests.conftest import IMAGE
from tests.conftest import test_settings as settings_for
from tests.support.client import ComputeClient
from tests.support.recorders import CountingConnection, counting_pool


@pytest.fixture
async def counted_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await counting_pool(database_url, max_size=2)
    try:
        yield pool
    finally:
        await pool.close()


def _context(tenant: str) -> RequestContext:
    return RequestContext("alice", tenant, frozenset({"member"}), f"req-{uuid.uuid4()}")


def _request(name: str, **members: object) -> ServerCreate:
    return ServerCreate.model_validate(
        {"name": name, "imageRef": IMAGE, "flavorRef": "1", **members}
    )


async def _round_trips_of_a_create(
    system: System, pool: asyncpg.Pool, tmp_path: Path, tenant: str, **settings: object
) -> int:
    """Round trips of a create once its statements are prepared (the first create)."""
    assert system.bus is not None
    compute = ComputeAPI(settings_for(tmp_path, **settings), pool, system.bus)
    await compute.create_servers(_context(tenant), _request("warm-up"))
    before = CountingConnection.round_trips
    await compute.create_servers(_context(tenant), _request("counted"))
    return CountingConnection.round_trips - before


async def test_a_create_without_a_quota_reads_inserts_and_marks_in_three(
    system: System, counted_pool: asyncpg.Pool, tmp_path: Path, tenant: str
) -> None:
    """One read (flavor, image, key pair, quotas, capacity), one insert with no BEGIN and
    COMMIT around it (nothing to count), one sent mark."""
    trips = await _round_trips_of_a_create(system, counted_pool, tmp_path, tenant)
    assert trips == 3


async def test_a_create_under_a_quota_counts_in_a_transaction(
    system: System, counted_pool: asyncpg.Pool, tmp_path: Path, tenant: str
) -> None:
    """The read; BEGIN, the project's quota lock, its usage, the insert, COMMIT; the mark."""
    trips = await _round_trips_of_a_create(
        system, counted_pool, tmp_path, tenant, quota_instances=10
    )
    assert trips == 7


async def test_the_create_read_finds_what_each_read_finds(system: System, tenant: str) -> None:
    pool = system.pool
    assert pool is not None
    settings = system.settings
    user = f"u{uuid.uuid4().hex[:8]}"
    await keypairs.insert(pool, user, "k", "f", "ssh-rsa x")
    await quota_overrides.put(pool, tenant, {"instances": 7, "cores": -1})
    image_id = uuid.UUID(IMAGE)

    async def read(
        flavor: str, image: uuid.UUID | None, key: str | None, project: str = tenant
    ) -> creates.CreateReads:
        return await creates.read(
            pool,
            flavor_id=flavor,
            image_id=image,
            project_id=project,
            user_id=user,
            key_name=key,
            ratios=ratios(settings),
            down_after_s=settings.host_down_after_s,
        )

    found = await read("1", image_id, "k")
    assert found.flavor == await flavors.get(pool, "1")
    assert found.image == await images.get(pool, image_id, tenant)
    assert found.key == await keypairs.get(pool, user, "k")
    assert found.overrides == await quota_overrides.for_project(pool, tenant)
    assert found.flavor is not None
    need = Resources(found.flavor.vcpus, found.flavor.ram_mb, found.flavor.disk_gb)
    assert found.fits is await hosts.could_ever_fit(
        pool, need, ratios(settings), settings.host_down_after_s
    )
    assert found.fits is True

    missing = await read("no-such-flavor", uuid.uuid4(), "no-such-key")
    assert (missing.flavor, missing.image, missing.key, missing.fits) == (None, None, None, None)
    nothing = await read("1", None, None, project=f"t{uuid.uuid4().hex[:10]}")
    assert (nothing.image, nothing.key, nothing.overrides) == (None, None, {})


async def test_concurrent_creates_are_all_marked_sent(system: System, api: ComputeClient) -> None:
    """Their marks share UPDATEs; every one is made before its create is answered."""
    replies = await asyncio.gather(*(api.create_server(f"c{i}", IMAGE) for i in range(20)))
    assert all(reply.status == 202 for reply in replies)
    ids = [uuid.UUID(reply.body["server"]["id"]) for reply in replies]
    assert system.pool is not None
    unsent = await system.pool.fetchval(
        "SELECT count(*) FROM actions WHERE server_id = ANY($1::uuid[]) AND NOT sent", ids
    )
    assert unsent == 0
    for server_id in ids:
        await api.delete_and_wait(str(server_id))
