"""A system of several hosts on the fake hypervisor, with a database of its own, for tests that
watch a host at work (``hold``), make it fail (``fail_next``) or move servers between hosts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from compute_agent.virt.fake import FakeDriver
from stratus.system import System
from tests import conftest
from tests.support.actions import host_usage, server_row
from tests.support.databases import fresh_database


@dataclass
class Cluster:
    system: System
    drivers: dict[str, FakeDriver]

    @property
    def pool(self) -> asyncpg.Pool:
        assert self.system.pool is not None
        return self.system.pool

    @property
    def hosts(self) -> list[str]:
        return sorted(self.drivers)

    async def host_of(self, server_id: str) -> str:
        host: str = (await server_row(self.pool, server_id))["host"]
        return host

    async def driver_of(self, server_id: str) -> FakeDriver:
        return self.drivers[await self.host_of(server_id)]

    def other(self, host: str) -> str:
        return next(h for h in self.hosts if h != host)

    async def usage(self) -> dict[str, tuple[int, int, int]]:
        return {host: await host_usage(self.pool, host) for host in self.hosts}


@asynccontextmanager
async def fake_cluster(
    tmp: Path, hosts: tuple[str, ...], **overrides: object
) -> AsyncIterator[Cluster]:
    """Hosts of 16 vCPUs, 8 GB of RAM and 500 GB of disk each, on a fresh database."""
    drivers = {host: FakeDriver(vcpus=16, ram_mb=8192, disk_gb=500) for host in hosts}
    async with fresh_database() as url:
        system = System(conftest.test_settings(tmp, **overrides), url, dict(drivers))
        await system.start()
        try:
            yield Cluster(system, drivers)
        finally:
            await system.stop()
