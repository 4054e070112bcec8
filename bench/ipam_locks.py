#!/usr/bin/env python3
"""How much of PostgreSQL's time a storm of fixed-address allocations spends waiting on locks.

Issue 18 found 82 % of PostgreSQL's samples during a boot storm waiting on one lock per
network, the one fixed-IP allocation took; this measures that share for the allocator alone,
so a change to it is judged by a number that depends neither on the machine's cores nor on
the rest of a boot. It runs the conductor's own build step (``conductor.ipam.
allocate_for_build``: the server's row lock, then one address per network) for --boots
servers placed on one host, from --conductors pools (one per conductor, --in-flight builds
each at once), while a connection of its own samples ``pg_stat_activity`` every 10 ms.

It prints the allocations per second (the load generator shares the machine: not a verdict)
and, of the samples of this database's backends inside a statement or a transaction, the
share waiting on a lock (``wait_event_type = 'Lock'``), by kind of lock.

Everything runs in a fresh database, dropped afterwards. A run::

    .venv/bin/python bench/ipam_locks.py --conductors 4 --in-flight 8 --boots 2000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import asyncpg

from conductor import ipam
from shared.config import Settings
from shared.db import seed, servers
from shared.db.pool import Conn, create_pool
from shared.messages import BuildServer, FlavorSpec, ImageSpec, InstanceSpec
from shared.sealing import Keyring, generate_key
from stratus.runtime import upgrade_database

HOST = "ipam-bench"
IMAGE = seed.image_id(seed.DEFAULT_IMAGES[0][0])
#: Builds carry a sealed admin password; nothing here opens it.
KEYRING = Keyring.from_setting(generate_key())


@dataclass
class Samples:
    """What the sampler saw: backend samples in a transaction, and those waiting on a lock."""

    taken: int = 0
    busy: int = 0
    waiting: Counter[str] = field(default_factory=Counter)

    @property
    def lock_share(self) -> float:
        return sum(self.waiting.values()) / max(self.busy, 1)


async def sample(url: str, stop: asyncio.Event) -> Samples:
    """Sample this database's backends every 10 ms until ``stop``."""
    conn = await asyncpg.connect(url)
    seen = Samples()
    try:
        while not stop.is_set():
            rows = await conn.fetch(
                """SELECT wait_event_type, wait_event FROM pg_stat_activity
                    WHERE datname = current_database() AND pid <> pg_backend_pid()
                      AND backend_type = 'client backend'
                      AND state IS DISTINCT FROM 'idle'"""
            )
            seen.taken += 1
            seen.busy += len(rows)
            for row in rows:
                if row["wait_event_type"] == "Lock":
                    seen.waiting[row["wait_event"]] += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.01)
    finally:
        await conn.close()
    return seen


async def placed_servers(conn: Conn, count: int) -> list[uuid.UUID]:
    """``count`` servers placed on HOST and waiting to spawn, as the scheduler leaves them."""
    await conn.execute(
        """INSERT INTO compute_hosts (name, hypervisor_type, hypervisor_uri, vcpus, ram_mb,
                                      disk_gb, vcpus_used, ram_mb_used, disk_gb_used,
                                      last_heartbeat)
           VALUES ($1, 'fake', 'fake://', 1000000, 1000000000, 1000000000, 0, 0, 0, now())""",
        HOST,
    )
    ids = [uuid.uuid4() for _ in range(count)]
    async with conn.transaction():
        for sid in ids:
            await servers.insert(
                conn,
                servers.NewServer(
                    id=sid,
                    tenant_id="bench",
                    user_id="bench",
                    name="ipam",
                    image_id=IMAGE,
                    flavor_id="1",
                    vcpus=1,
                    ram_mb=512,
                    disk_gb=1,
                    access_ipv4="",
                    access_ipv6="",
                    metadata={},
                ),
            )
        await conn.execute(
            "UPDATE servers SET host = $2, task_state = 'spawning' WHERE id = ANY($1::uuid[])",
            ids,
            HOST,
        )
    return ids


def build_request(server_id: uuid.UUID) -> BuildServer:
    action_id = uuid.uuid4()
    return BuildServer(
        server_id=server_id,
        action_id=action_id,
        admin_pass=BuildServer.seal_admin_pass(
            KEYRING, "secret", server_id=server_id, action_id=action_id
        ),
        instance=InstanceSpec(
            server_id=server_id,
            name="ipam",
            flavor=FlavorSpec(id="1", name="m1.tiny", vcpus=1, ram_mb=512, disk_gb=1),
            image=ImageSpec(id=IMAGE, name="cirros"),
        ),
    )


async def storm(url: str, args: argparse.Namespace, ids: list[uuid.UUID]) -> float:
    """Allocate for every server from --conductors pools; the seconds it took."""
    settings = Settings.model_validate({"networks": args.networks})
    pools = [
        await create_pool(url, min_size=args.in_flight, max_size=args.in_flight)
        for _ in range(args.conductors)
    ]
    queue: asyncio.Queue[uuid.UUID] = asyncio.Queue()
    for sid in ids:
        queue.put_nowait(sid)
    failed = 0

    async def builder(pool: asyncpg.Pool) -> None:
        nonlocal failed
        while not queue.empty():
            sid = queue.get_nowait()
            async with pool.acquire() as conn:
                if not await ipam.allocate_for_build(conn, build_request(sid), HOST, settings):
                    failed += 1

    try:
        started = time.perf_counter()
        await asyncio.gather(*(builder(p) for p in pools for _ in range(args.in_flight)))
        elapsed = time.perf_counter() - started
    finally:
        for pool in pools:
            await pool.close()
    if failed:
        print(f"  {failed} builds failed (network full?)")
    return elapsed


def database_url(admin_url: str, name: str) -> str:
    head, _, query = admin_url.partition("?")
    return head.rsplit("/", 1)[0] + f"/{name}" + (f"?{query}" if query else "")


async def run(args: argparse.Namespace) -> None:
    name = f"stratus_bench_ipam_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(args.admin_database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = database_url(args.admin_database_url, name)
    try:
        await upgrade_database(url)
        setup = await create_pool(url, min_size=1, max_size=1)
        try:
            async with setup.acquire() as conn:
                ids = await placed_servers(conn, args.boots)
            if args.warm_up:  # the first build of a network may set it up: not the storm
                first = await create_pool(url, min_size=1, max_size=1)
                async with first.acquire() as one:
                    settings = Settings.model_validate({"networks": args.networks})
                    await ipam.allocate_for_build(one, build_request(ids[0]), HOST, settings)
                await first.close()
                ids = ids[1:]
            stop = asyncio.Event()
            sampler = asyncio.create_task(sample(url, stop))
            try:
                elapsed = await storm(url, args, ids)
            finally:
                stop.set()
                seen = await sampler
            held = await setup.fetchval("SELECT count(*) FROM fixed_ips")
            distinct = await setup.fetchval("SELECT count(DISTINCT address) FROM fixed_ips")
        finally:
            await setup.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()

    print(
        f"{len(ids)} allocations on {args.networks} from {args.conductors} conductors x "
        f"{args.in_flight} in flight: {elapsed:.2f} s, {len(ids) / elapsed:.0f}/s"
    )
    print(f"  addresses held: {held}, distinct: {distinct}")
    print(
        f"  {seen.taken} samples, {seen.busy} backend samples in a statement or transaction;"
        f" waiting on a lock: {seen.lock_share * 100:.1f} %"
    )
    for event, count in seen.waiting.most_common():
        print(f"    {count / max(seen.busy, 1) * 100:5.1f} %  Lock/{event}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--admin-database-url", default="postgresql://postgres@127.0.0.1:5432/postgres"
    )
    parser.add_argument("--conductors", type=int, default=4)
    parser.add_argument("--in-flight", type=int, default=8, help="builds at once per conductor")
    parser.add_argument("--boots", type=int, default=2000)
    parser.add_argument("--networks", default="private=10.0.0.0/16")
    parser.add_argument(
        "--no-warm-up",
        dest="warm_up",
        action="store_false",
        help="do not build one server before the storm (which may set the network up)",
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
