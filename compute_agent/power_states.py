"""The agent's reports of what its hypervisor says of its servers' power, unasked.

A guest can change its power by itself: shut down, crash, be paused by its hypervisor (an
I/O error), be started behind Stratus's back. The hypervisor tells the driver (``listen``:
libvirt's lifecycle events), and the agent checks that server's power state and reports it
at once (``PowerStateReport``); every ``interval_s`` it also reports the power state of all its
servers, a safety net for what no event told. These reports are hints: the agent's clock
may be minutes off PostgreSQL's, so the conductor cannot tell from it whether an
observation is older or newer than a change in the database. Where a hint disagrees with
the database, the conductor asks again (``ProbeServers``, answered by the agent's service),
and only the answer changes a server (conductor/power_states.py). So the agent may report
whatever it sees, whenever.

A server's check waits for the server's lock (commands for it run one at a time, and a
command's own power changes are reported by the command): it looks once the command is
over. Events arriving while a check waits for its turn are folded into that check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from compute_agent.locks import KeyedLocks
from compute_agent.virt.driver import ComputeDriver, DriverError, server_id_of
from shared import bus as bus_mod
from shared.bus import Bus, PublishFailed
from shared.messages import PowerStateReport, ServerPower
from shared.periodic import Periodic
from shared.states import PowerState

log = logging.getLogger(__name__)


def wall_clock() -> datetime:
    """This host's clock, which stamps what the agent tells for people to read (tests
    give an agent a clock that is off, as a host's may be)."""
    return datetime.now(UTC)


class PowerStateWatch:
    def __init__(
        self,
        host: str,
        bus: Bus,
        driver: ComputeDriver,
        locks: KeyedLocks,
        *,
        interval_s: float,
        clock: Callable[[], datetime] = wall_clock,
    ) -> None:
        """``locks``: the agent's per-server locks; ``interval_s``: how often every server's
        power state is reported (0: never, events only); ``clock`` stamps the reports'
        ``observed_at``."""
        self.host = host
        self.clock = clock
        self.bus = bus
        self.driver = driver
        self.locks = locks
        self.interval_s = interval_s
        self._waiting: set[uuid.UUID] = set()
        self._checks: set[asyncio.Task[None]] = set()
        # jittered, as heartbeats are: agents started together (a simulated cluster) would
        # otherwise all report every server at the same moment, every interval
        self._periodic = Periodic(
            f"report the power states of {host}'s servers",
            self.report_all,
            interval_s=interval_s,
            tolerated=(DriverError, PublishFailed),
            jitter=0.25,
        )
        self._stopped = False

    def start(self) -> None:
        """Listen to the hypervisor (its driver is initialised) and start the periodic check."""
        self.driver.listen(self.changed)
        self._periodic.start()

    async def stop(self) -> None:
        """No more checks (events arriving from now on are ignored); those under way end."""
        self._stopped = True
        await self._periodic.stop()
        tasks = list(self._checks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._checks.clear()

    def changed(self, domain_name: str) -> None:
        """The hypervisor says ``domain_name``'s power changed: check and report it (once for
        all the events that come while the check waits for its turn)."""
        server_id = server_id_of(domain_name)
        if self._stopped or server_id is None or server_id in self._waiting:
            return
        self._waiting.add(server_id)
        task = asyncio.create_task(self._check(server_id, domain_name))
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    async def _check(self, server_id: uuid.UUID, domain_name: str) -> None:
        async with self.locks.hold(server_id):
            self._waiting.discard(server_id)
            observed_at = self.clock()
            try:
                power = await self.driver.power_state(domain_name)
            except DriverError as exc:
                log.warning("cannot tell the power state of %s: %s", domain_name, exc)
                return
            await self._publish(observed_at, {server_id: power}, server_id=server_id)

    async def report_all(self) -> None:
        """Report the power state of every server on the hypervisor, in one message, even
        when there is none: the conductor also learns from it which servers the host lacks
        (conductor/reconcile.py)."""
        observed_at = self.clock()
        states = await self.driver.power_states()
        found = {
            server_id: power
            for name, power in states.items()
            if (server_id := server_id_of(name)) is not None
        }
        await self._publish(observed_at, found)

    async def _publish(
        self,
        observed_at: datetime,
        states: dict[uuid.UUID, PowerState],
        *,
        server_id: uuid.UUID | None = None,
    ) -> None:
        report = PowerStateReport(
            request_id=f"req-{uuid.uuid4()}",  # the conductor's lines about it carry this id
            server_id=server_id,
            host=self.host,
            observed_at=observed_at,
            servers=[ServerPower(server_id=s, power_state=int(p)) for s, p in states.items()],
        )
        try:
            await self.bus.publish(bus_mod.REPORTS, report)
        except PublishFailed as exc:  # the next check (or event) tells again
            log.warning("could not report power states of %s: %s", self.host, exc)
