"""Many compute hosts in one process, to stand in for a big cluster on one machine.

``stratus agent --simulate N`` runs N ordinary ``AgentService``s, each with its own host
name (``sim-0001`` ...), its own queue, heartbeats and in-memory hypervisor (``FakeDriver``):
to the conductors and the database they are N hosts like any other. Only the process is
shared, and what must be shared with care:

* connections: every agent consumes on a channel of its own (the bus's rule), and one
  connection carries at most ``per_connection`` of them, far below RabbitMQ's channel_max
  (2047 by default), so no connection's frames become the bottleneck either;
* startup: agents start ``start_concurrency`` at a time (each start is a few round trips to
  the broker), with progress reported as they come up;
* periodic work: each agent's heartbeat interval, and that of its report of every server's
  power state, is jittered (between 75% and 100% of it, never later), so a thousand agents
  started together drift apart instead of beating, and reporting, in step.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from compute_agent.image_service import ImageServiceClient
from compute_agent.service import AgentService
from compute_agent.virt.driver import ComputeDriver
from compute_agent.virt.factory import image_service_client
from shared.bus import Bus
from shared.config import Settings
from shared.sealing import Keyring

log = logging.getLogger(__name__)

#: (agents started so far, agents in all, seconds since the start began)
Progress = Callable[[int, int, float], None]


def host_names(prefix: str, count: int) -> list[str]:
    """``prefix-0001`` ... ``prefix-<count>``: zero-padded, so they sort as they number."""
    width = max(4, len(str(count)))
    return [f"{prefix}-{i:0{width}d}" for i in range(1, count + 1)]


@dataclass(frozen=True)
class AgentOptions:
    """What every simulated agent is given (the real agent's settings)."""

    heartbeat_interval_s: float = 10.0
    concurrency: int = 16
    power_sync_interval_s: float = 60.0
    #: where createImage writes (shared by the simulated hosts, as by real ones)
    image_store: Path | None = None
    #: opens the admin passwords of builds, rebuilds and password changes
    keyring: Keyring | None = None
    #: how long an image the host downloaded may go unused before it is removed
    image_cache_max_age_s: float = 86400.0
    #: where createImage stores images (the image API); None: into ``image_store``
    image_service: ImageServiceClient | None = None
    #: where an image is written before it is stored
    scratch_dir: Path | None = None

    @classmethod
    def of(cls, settings: Settings, keyring: Keyring | None) -> AgentOptions:
        """What the settings give an agent (the real one, or each simulated one)."""
        return cls(
            heartbeat_interval_s=settings.heartbeat_interval_s,
            concurrency=settings.agent_concurrency,
            power_sync_interval_s=settings.power_sync_interval_s,
            image_store=settings.image_store,
            keyring=keyring,
            image_cache_max_age_s=settings.image_cache_max_age_s,
            image_service=image_service_client(settings),
            scratch_dir=settings.data_dir / "scratch",
        )

    def agent(self, host: str, bus: Bus, driver: ComputeDriver) -> AgentService:
        """The agent of ``host``, with these options."""
        return AgentService(
            host,
            bus,
            driver,
            heartbeat_interval_s=self.heartbeat_interval_s,
            concurrency=self.concurrency,
            power_sync_interval_s=self.power_sync_interval_s,
            image_store=self.image_store,
            keyring=self.keyring,
            image_cache_max_age_s=self.image_cache_max_age_s,
            image_service=self.image_service,
            scratch_dir=self.scratch_dir,
        )


@dataclass
class Simulation:
    """``hosts`` as agents over buses made by ``new_bus``, their drivers by ``new_driver``."""

    hosts: Sequence[str]
    new_bus: Callable[[], Bus]
    new_driver: Callable[[], ComputeDriver]
    options: AgentOptions = field(default_factory=AgentOptions)
    per_connection: int = 200
    start_concurrency: int = 50
    agents: list[AgentService] = field(default_factory=list, init=False)
    buses: list[Bus] = field(default_factory=list, init=False)

    async def start(self, progress: Progress | None = None) -> None:
        """Connect the buses and start every agent; on a failure, stop what started."""
        began = time.monotonic()
        try:
            await self._connect()
            self.agents = [self._agent(i, host) for i, host in enumerate(self.hosts)]
            await self._start_agents(progress, began)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop every agent (their consumers first), then close the connections."""
        await asyncio.gather(*(agent.stop() for agent in self.agents), return_exceptions=True)
        self.agents = []
        for bus in self.buses:
            await bus.close()
        self.buses = []

    async def _connect(self) -> None:
        connections = max(1, -(-len(self.hosts) // max(1, self.per_connection)))
        self.buses = [self.new_bus() for _ in range(connections)]
        await asyncio.gather(*(bus.connect() for bus in self.buses))

    def _agent(self, index: int, host: str) -> AgentService:
        bus = self.buses[index // max(1, self.per_connection)]
        return self.options.agent(host, bus, self.new_driver())

    async def _start_agents(self, progress: Progress | None, began: float) -> None:
        """Start the agents, ``start_concurrency`` at a time; the first failure cancels the
        starts still under way (``start`` then stops them all)."""
        slots = asyncio.Semaphore(max(1, self.start_concurrency))
        started = 0

        async def start_one(agent: AgentService) -> None:
            nonlocal started
            async with slots:
                await agent.start()
            started += 1
            if progress is not None:
                progress(started, len(self.agents), time.monotonic() - began)

        async with asyncio.TaskGroup() as group:
            for agent in self.agents:
                group.create_task(start_one(agent))
        log.info("%d simulated hosts started in %.1f s", started, time.monotonic() - began)
