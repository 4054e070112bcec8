"""Helpers for the server-action tests: act in JSON or XML, wait for images, read usage."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg

from tests.support.client import ComputeClient, Reply

COMPUTE_NS = "http://docs.openstack.org/compute/api/v1.1"


async def act(api: ComputeClient, server_id: str, body: Any) -> Reply:
    return await api.post(f"/servers/{server_id}/action", body)


async def act_xml(
    api: ComputeClient, server_id: str, xml: str, *, accept: str = "application/json"
) -> Reply:
    """POST an XML action body (the guide's samples' form)."""
    return await api.request(
        "POST",
        f"/servers/{server_id}/action",
        headers={"Content-Type": "application/xml", "Accept": accept},
        data=xml.encode(),
    )


async def active_server(api: ComputeClient, name: str, image: str, flavor: str = "1") -> str:
    reply = await api.create_server(name, image, flavor)
    assert reply.status == 202, reply
    server_id: str = reply.body["server"]["id"]
    await api.wait_for_status(server_id, "ACTIVE")
    return server_id


async def wait_for_image(
    api: ComputeClient, image_id: str, status: str, timeout_s: float = 30.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    last: Reply | None = None
    while time.monotonic() < deadline:
        last = await api.get(f"/images/{image_id}")
        if last.status == 200 and last.body["image"]["status"] == status:
            image: dict[str, Any] = last.body["image"]
            return image
        await asyncio.sleep(0.05)
    raise AssertionError(f"image {image_id} never reached {status}; last: {last}")


async def host_usage(pool: asyncpg.Pool, host: str) -> tuple[int, int, int]:
    row = await pool.fetchrow(
        "SELECT vcpus_used, ram_mb_used, disk_gb_used FROM compute_hosts WHERE name = $1", host
    )
    assert row is not None
    return (row["vcpus_used"], row["ram_mb_used"], row["disk_gb_used"])


def plus(usage: tuple[int, int, int], *flavors: tuple[int, int, int]) -> tuple[int, int, int]:
    """``usage`` with the (vcpus, ram MB, disk GB) of ``flavors`` added."""
    vcpus, ram, disk = usage
    for f_vcpus, f_ram, f_disk in flavors:
        vcpus, ram, disk = vcpus + f_vcpus, ram + f_ram, disk + f_disk
    return (vcpus, ram, disk)


#: (vcpus, RAM MB, disk GB) of the seeded flavors
FLAVORS = {
    "1": (1, 512, 1),
    "2": (1, 2048, 20),
    "3": (2, 4096, 40),
    "4": (4, 8192, 80),
    "5": (8, 16384, 160),
}


async def server_row(pool: asyncpg.Pool, server_id: str) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM servers WHERE id = $1", uuid.UUID(server_id))
    assert row is not None
    return row


async def actions_of(pool: asyncpg.Pool, server_id: str) -> list[tuple[str, str]]:
    """(action, result) of the server's recorded actions, oldest first."""
    rows = await pool.fetch(
        "SELECT action, result FROM actions WHERE server_id = $1 ORDER BY started_at, id",
        uuid.UUID(server_id),
    )
    return [(r["action"], r["result"]) for r in rows]


async def migrations_of(pool: asyncpg.Pool, server_id: str) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await pool.fetch(
        "SELECT * FROM migrations WHERE server_id = $1 ORDER BY created_at",
        uuid.UUID(server_id),
    )
    return rows


async def wait_until_action_done(
    pool: asyncpg.Pool, server_id: str, timeout_s: float = 30.0
) -> None:
    """Until no action of the server is pending (its last report was applied)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pending = await pool.fetchval(
            "SELECT count(*) FROM actions WHERE server_id = $1 AND result = 'pending'",
            uuid.UUID(server_id),
        )
        if pending == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"server {server_id} still has pending actions")
