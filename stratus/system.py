"""Everything in one process: gateway, conductor and compute agents on one pool and one bus.

``stratus up`` runs this, and so do the functional tests: the same composition a user gets,
in one event loop. Each compute host is one agent with a driver of its own (``drivers``, by
host name); ``stratus up`` runs two by default, so that servers can move between hosts.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import asyncpg
from aiohttp import web

from api_gateway.app import create_app, open_pool
from api_gateway.auth.exposure import check_exposure
from compute_agent.service import AgentService
from compute_agent.simulation import AgentOptions
from compute_agent.virt.driver import ComputeDriver
from conductor.service import ConductorService
from shared.bus import Bus
from shared.bus.factory import create_bus
from shared.config import Settings
from shared.db import hosts
from shared.db.pool import create_pool
from shared.sealing import Keyring

log = logging.getLogger(__name__)


@dataclass
class System:
    settings: Settings
    database_url: str
    drivers: dict[str, ComputeDriver]
    pool: asyncpg.Pool | None = None
    api_pool: asyncpg.Pool | None = None  # the gateway's: its statements are bounded
    bus: Bus | None = None
    conductor: ConductorService | None = None
    agents: list[AgentService] = field(default_factory=list)
    runner: web.AppRunner | None = None
    url: str = ""

    async def start(self) -> None:
        settings = self.settings
        check_exposure(settings)  # before anything starts: a refusal leaves nothing running
        # gateway and agents share the process, so the key too (``stratus up`` made or loaded
        # it: stratus/runtime.py); a missing one stops the start here, like a refusal above
        keyring = Keyring.from_setting(settings.message_key)
        self.pool = await create_pool(
            self.database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max
        )
        self.bus = create_bus(settings)
        await self.bus.connect()
        self.conductor = ConductorService(settings, self.pool, self.bus)
        await self.conductor.start()
        for host, driver in self.drivers.items():
            agent = AgentOptions.of(settings, keyring).agent(host, self.bus, driver)
            await agent.start()
            self.agents.append(agent)
        await self.wait_for_hosts(list(self.drivers))
        self.api_pool = await open_pool(settings, self.database_url)
        self.runner = web.AppRunner(create_app(settings, pool=self.api_pool, bus=self.bus))
        await self.runner.setup()
        site = web.TCPSite(self.runner, settings.api_host, settings.api_port)
        await site.start()
        host, port = self.runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def hypervisors(self) -> dict[str, str]:
        """Each host's hypervisor, as its agent reports it (host name -> URI)."""
        return {host: (await d.capacity()).hypervisor_uri for host, d in self.drivers.items()}

    async def wait_for_hosts(self, names: list[str], timeout_s: float = 15.0) -> None:
        """Wait until the conductor has registered every agent's host from its heartbeat."""
        assert self.pool is not None
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            known = await hosts.count_up(self.pool, names)
            if known == len(names):
                return
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"compute hosts {names} did not register")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        for agent in self.agents:
            await agent.stop()
        if self.conductor is not None:
            await self.conductor.stop()
        if self.bus is not None:
            await self.bus.close()
        for pool in (self.api_pool, self.pool):
            if pool is not None:
                await pool.close()
