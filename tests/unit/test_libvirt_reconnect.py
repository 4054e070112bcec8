"""The agent's connection to libvirtd across restarts (compute_agent/virt/libvirt/connection.py):
a connection that closes (libvirt's close callback, or a call that finds it closed) fails
every call at once while a new one is opened with a capped, doubling backoff; the new one
gets the keepalive, the close callback and the domain events again; the driver then tells
the agent, which reports its servers again, and beats only while libvirtd answers.

The loop of reconnection runs on fake connections; the driver and the agent on libvirt's
test hypervisor, whose connections never close by themselves: there the loss is declared
the way libvirt's close callback declares it (``lost``), and the new connection is held
back by its opener until the test lets it through.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from shared.messages import (
    FlavorSpec,
    Heartbeat,
    HostInventory,
    ImageSpec,
    InstanceSpec,
    Message,
    PowerStateReport,
)
from tests.support.missing import LIBVIRT_BINDING

libvirt = pytest.importorskip("libvirt", reason=LIBVIRT_BINDING)

from compute_agent.service import AgentService  # noqa: E402
from compute_agent.virt.driver import DriverError  # noqa: E402
from compute_agent.virt.libvirt import connection as connection_mod  # noqa: E402
from compute_agent.virt.libvirt.connection import (  # noqa: E402
    KEEPALIVE_COUNT,
    HypervisorUnreachable,
    LibvirtConnection,
    backoff_s,
)
from compute_agent.virt.libvirt.driver import LibvirtDriver  # noqa: E402
from shared import bus as bus_mod  # noqa: E402
from shared.bus.memory import MemoryBus  # noqa: E402

URI = "qemu+tcp://192.0.2.1/system"

#: how long anything the tests wait for may take (a loaded machine), never a verdict
PATIENCE_S = 10.0


async def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.01)


class FakeConnection:
    """What the connection code uses of a ``virConnect``, recorded."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.keepalive: tuple[int, int] | None = None
        self.close_callback: Callable[[Any, int, object], None] | None = None
        self.events: dict[int, int] = {}  # callback id -> event id
        self.alive = True
        self.closed = False

    def setKeepAlive(self, interval: int, count: int) -> int:
        self.keepalive = (interval, count)
        return 0

    def registerCloseCallback(self, callback: Any, _opaque: object) -> int:
        self.close_callback = callback
        return 0

    def unregisterCloseCallback(self) -> int:
        self.close_callback = None
        return 0

    def domainEventRegisterAny(self, _dom: Any, event: int, _cb: Any, _opaque: Any) -> int:
        callback_id = len(self.events) + 1
        self.events[callback_id] = event
        return callback_id

    def domainEventDeregisterAny(self, callback_id: int) -> int:
        if not self.alive:
            raise libvirt.libvirtError("internal error: client socket is closed")
        del self.events[callback_id]
        return 0

    def isAlive(self) -> int:
        return int(self.alive)

    def close(self) -> int:
        self.closed = True
        return 0

    def die(self, reason: int = libvirt.VIR_CONNECT_CLOSE_REASON_EOF) -> None:
        """libvirtd went away: libvirt calls the close callback from its event thread."""
        self.alive = False
        callback = self.close_callback
        assert callback is not None, "no close callback registered"
        thread = threading.Thread(target=callback, args=(self, reason, None))
        thread.start()
        thread.join()


class Opener:
    """``libvirt.open`` for the tests: refuses while ``refusals`` last, else a new fake."""

    def __init__(self) -> None:
        self.opened: list[FakeConnection] = []
        self.refusals = 0

    def __call__(self, uri: str) -> FakeConnection:
        if self.refusals > 0:
            self.refusals -= 1
            raise libvirt.libvirtError(f"unable to connect to server at {uri}: refused")
        conn = FakeConnection(len(self.opened) + 1)
        self.opened.append(conn)
        return conn


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, float]]:
    """The backoff of each failed attempt, (attempt, wait in s), recorded and not waited."""
    recorded: list[tuple[int, float]] = []

    def no_wait(attempt: int, cap_s: float) -> float:
        recorded.append((attempt, backoff_s(attempt, cap_s)))
        return 0.0

    monkeypatch.setattr(connection_mod, "backoff_s", no_wait)
    return recorded


def test_the_backoff_doubles_from_half_a_second_up_to_its_cap() -> None:
    assert [backoff_s(n, 10.0) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff_s(10_000, 30.0) == 30.0


async def test_a_closed_connection_fails_calls_at_once_and_is_reopened_watched_again(
    waits: list[tuple[int, float]],
) -> None:
    opener = Opener()
    keeper = LibvirtConnection(URI, keepalive_s=7, reconnect_max_s=3.0, opener=opener)
    hooked: list[FakeConnection] = []
    keeper.on_connect(hooked.append)
    told = asyncio.Event()

    async def back() -> None:
        told.set()

    keeper.on_reconnect(back)
    await keeper.open()
    (first,) = opener.opened
    assert first.keepalive == (7, KEEPALIVE_COUNT) and first.close_callback is not None
    assert keeper.current() is first and hooked == [first]

    opener.refusals = 4  # libvirtd takes a while to come back
    late = first.close_callback
    first.die()
    assert not keeper.connected  # at once: the callback's own thread said so
    started = time.monotonic()
    with pytest.raises(HypervisorUnreachable, match=re.escape(f"libvirt at {URI} is unreachable")):
        keeper.current()
    assert time.monotonic() - started < 1.0

    await asyncio.wait_for(told.wait(), PATIENCE_S)
    second = opener.opened[-1]
    assert opener.opened == [first, second]
    assert waits == [(1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0)]  # doubling, capped
    assert keeper.current() is second and keeper.reconnections == 1
    assert second.keepalive == (7, KEEPALIVE_COUNT) and second.close_callback is not None
    assert hooked == [first, second]  # the events subscribed again, before any use
    assert first.closed and first.close_callback is None  # the dead one released

    assert late is not None
    late(first, libvirt.VIR_CONNECT_CLOSE_REASON_EOF, None)  # a late word about the old
    assert keeper.current() is second  # connection changes nothing
    await keeper.close()
    assert second.closed and not keeper.connected


async def test_a_call_that_finds_the_connection_closed_starts_the_reconnection(
    waits: list[tuple[int, float]],
) -> None:
    opener = Opener()
    keeper = LibvirtConnection(URI, opener=opener)
    told = asyncio.Event()

    async def back() -> None:
        told.set()

    keeper.on_reconnect(back)
    await keeper.open()
    (first,) = opener.opened
    assert keeper.check()  # open: nothing happens
    assert keeper.current() is first
    first.alive = False  # no close callback came (yet)
    assert not keeper.check()
    await asyncio.wait_for(told.wait(), PATIENCE_S)
    assert keeper.current() is opener.opened[1] and waits == []
    await keeper.close()


async def test_the_test_hypervisor_gets_no_keepalive_nor_close_callback() -> None:
    opener = Opener()
    keeper = LibvirtConnection("test:///default", opener=opener)
    await keeper.open()
    (conn,) = opener.opened
    assert conn.keepalive is None and conn.close_callback is None
    await keeper.close()
    assert conn.closed


async def test_reconnection_stops_when_the_connection_is_closed(
    waits: list[tuple[int, float]],
) -> None:
    opener = Opener()
    keeper = LibvirtConnection(URI, opener=opener)
    await keeper.open()
    opener.refusals = 10**9  # libvirtd never comes back
    opener.opened[0].die()
    await _until(lambda: len(waits) >= 3, "attempts to reconnect")
    await keeper.close()
    attempts = len(waits)
    await asyncio.sleep(0.05)
    assert len(waits) == attempts and not keeper.connected


# --- the driver and the agent, on the test hypervisor ---------------------------------------


def _instance() -> InstanceSpec:
    return InstanceSpec(
        server_id=uuid.uuid4(),
        name="kept",
        flavor=FlavorSpec(id="1", name="m1.tiny", vcpus=1, ram_mb=512, disk_gb=1),
        image=ImageSpec(id=uuid.uuid4(), name="cirros"),
    )


class Gate:
    """An opener of the test hypervisor's connections that waits until let through."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.open.set()

    def __call__(self, uri: str) -> Any:
        assert self.open.wait(PATIENCE_S), "the test never let the connection through"
        return libvirt.open(uri)


@pytest.fixture
async def gated(tmp_path: Path) -> AsyncIterator[tuple[LibvirtDriver, Gate]]:
    driver = LibvirtDriver("test:///default", tmp_path / "instances")
    gate = Gate()
    driver.connection._opener = gate
    await driver.init_host("reconnecting-host")
    try:
        yield driver, gate
    finally:
        gate.open.set()
        await driver.close()


def _lose(driver: LibvirtDriver, gate: Gate) -> None:
    """libvirtd went away (as its close callback says), and stays away until the gate opens."""
    gate.open.clear()
    driver.connection.lost(driver.connection.current(), "the test closed it")


async def _fails_fast(call: Awaitable[object]) -> None:
    started = time.monotonic()
    with pytest.raises(DriverError, match="libvirt at test:///default is unreachable"):
        await call
    assert time.monotonic() - started < 2.0


async def test_the_driver_fails_fast_while_away_then_listens_on_its_new_connection(
    gated: tuple[LibvirtDriver, Gate],
) -> None:
    driver, gate = gated
    instance = _instance()
    await driver.spawn(instance, "pw")
    heard: list[str] = []
    driver.listen(heard.append)
    told = asyncio.Event()

    async def back() -> None:
        told.set()

    driver.on_reconnect(back)

    _lose(driver, gate)
    await _fails_fast(driver.pause(instance.domain_name))
    await _fails_fast(driver.capacity())  # what the heartbeat asks
    await _fails_fast(driver.list_instances())

    gate.open.set()
    await asyncio.wait_for(told.wait(), PATIENCE_S)
    assert driver.connection.reconnections == 1
    assert instance.domain_name in await driver.list_instances()  # the domain is still there
    await driver.pause(instance.domain_name)
    await _until(lambda: instance.domain_name in heard, "the pause's event")
    heard.clear()
    await driver.unpause(instance.domain_name)  # heard through the new subscription only:
    await _until(lambda: instance.domain_name in heard, "the unpause's event")
    await driver.destroy(instance.domain_name)


async def test_the_agent_beats_only_while_libvirtd_answers_and_reports_all_when_back(
    gated: tuple[LibvirtDriver, Gate],
) -> None:
    driver, gate = gated
    bus = MemoryBus()
    heard: list[Message] = []

    async def collect(message: Message) -> None:
        heard.append(message)

    subscriptions = [await bus.consume(q, collect) for q in (bus_mod.REPORTS, bus_mod.HEARTBEATS)]
    agent = AgentService(
        "reconnecting-host", bus, driver, heartbeat_interval_s=3600, power_sync_interval_s=0
    )
    instance = _instance()
    try:
        await agent.start()
        await driver.spawn(instance, "pw")
        await _until(lambda: any(isinstance(m, HostInventory) for m in heard), "the inventory")
        await _until(lambda: any(isinstance(m, Heartbeat) for m in heard), "the first beat")

        _lose(driver, gate)
        with pytest.raises(DriverError, match="unreachable"):
            await agent.heartbeat()  # the periodic loop logs it and beats no more meanwhile
        heard.clear()

        gate.open.set()
        kinds = (Heartbeat, HostInventory, PowerStateReport)
        await _until(
            lambda: all(any(isinstance(m, k) for m in heard) for k in kinds),
            "a heartbeat, the inventory and the power states after reconnecting",
        )
        (beat,) = [m for m in heard if isinstance(m, Heartbeat)]
        (inventory,) = [m for m in heard if isinstance(m, HostInventory)]
        assert beat.host == inventory.host == "reconnecting-host"
        assert instance.server_id in inventory.servers
        reported = {
            s.server_id for m in heard if isinstance(m, PowerStateReport) for s in m.servers
        }
        assert instance.server_id in reported
        await agent.heartbeat()  # beating again
    finally:
        gate.open.set()
        await _until(lambda: driver.connection.connected, "the connection back")
        await driver.destroy(instance.domain_name)
        await agent.stop()  # closes the driver too (the fixture's close is then a no-op)
        for subscription in subscriptions:
            await subscription.cancel()
        await bus.close()
