"""A host's libvirtd restarts under its running guests (an upgrade, a crash): the agent
notices its connection closed, fails what it is asked meanwhile at once, reconnects, and the
host serves again (compute_agent/virt/libvirt/connection.py).

libvirtd is killed as a crash (SIGKILL) and started again with the same configuration, state
and socket, in the host's namespaces (tests/support/libvirtd.py):

- while a guest runs: the same QEMU process runs on and the guest goes on printing (same
  boot, its uptime going on); an action sent while libvirtd is away fails at once with a
  fault saying libvirtd is unreachable, and the server stays as it was; once the agent has
  reconnected, actions through the API succeed again, and the lifecycle events of the new
  connection are heard (a guest that powers itself off is SHUTOFF at once);
- while a soft reboot is in flight (the guest has been asked and is shutting down): the
  reboot ends, done or failed with a fault, never stuck, and the host serves again: a hard
  reboot brings the guest up.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tests.realvm.cluster import BOOT_TIMEOUT_S, GuestStatus, RealCluster, statuses
from tests.support import libvirtd
from tests.support.actions import act, actions_of, wait_until_action_done
from tests.support.client import ComputeClient

if TYPE_CHECKING:
    from compute_agent.virt.libvirt.driver import LibvirtDriver

#: how long the agent may take to notice the closed connection, or to reconnect once
#: libvirtd is back (backoff of 0.5, 1, 2 ... s: a few seconds; patience for a busy machine)
NOTICE_S = 30.0
RECONNECT_S = 60.0

#: how long after the guest's power-off the API may still show it running (as
#: test_driver_guests.py: the event, not the periodic check, which comes every 60 s)
SHUTOFF_WITHIN_S = 15.0


async def _until(condition: Callable[[], bool], what: str, timeout_s: float) -> float:
    """Poll ``condition`` until it holds; how long that took."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout_s, f"never within {timeout_s:g} s: {what}"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


def _driver(cluster: RealCluster, host: str) -> LibvirtDriver:
    """The host's libvirt driver (imported here: collecting this module must not need the
    binding, on a machine without it)."""
    from compute_agent.virt.libvirt.driver import LibvirtDriver

    driver = cluster.drivers[host]
    assert isinstance(driver, LibvirtDriver)
    return driver


def _forget_suite_connection(cluster: RealCluster, host: str) -> None:
    """The suite's own connection to the host's libvirtd died with the daemon: dropped, so
    that the next look at the host opens one to the new daemon."""
    import libvirt

    conn = cluster._connections.pop(host, None)
    if conn is not None:
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()


@contextlib.asynccontextmanager
async def libvirtd_away(cluster: RealCluster, host: str) -> AsyncIterator[LibvirtDriver]:
    """The host's libvirtd crashed (SIGKILL) for the block, its agent's driver having noticed
    when the block begins; started again afterwards whatever happened in the block. Yields
    the driver; the caller waits for its reconnection (``reconnected``)."""
    daemon = cluster.daemons[host]
    driver = _driver(cluster, host)
    async with cluster.stopwatch.measure("libvirtd killed → agent notices"):
        await asyncio.to_thread(libvirtd.kill_libvirtd, daemon, crash=True)
        _forget_suite_connection(cluster, host)
        await _until(lambda: not driver.connection.connected, "the agent notices", NOTICE_S)
    try:
        yield driver
    finally:
        await asyncio.to_thread(libvirtd.start_libvirtd, daemon)


async def reconnected(cluster: RealCluster, driver: LibvirtDriver, before: int) -> None:
    """Until the driver has reconnected (once more than ``before``) to the new libvirtd."""
    started = time.monotonic()
    await _until(
        lambda: driver.connection.connected and driver.connection.reconnections > before,
        "the agent reconnects",
        RECONNECT_S,
    )
    cluster.stopwatch.record("libvirtd answers → agent reconnected", time.monotonic() - started)


async def _prints_after(console: Path, offset: int) -> GuestStatus:
    """The first status line the guest prints in its console log after ``offset``: read
    from the file itself (QEMU writes it through virtlogd), libvirtd being away."""
    deadline = time.monotonic() + BOOT_TIMEOUT_S
    while True:
        with console.open("rb") as log:
            log.seek(offset)
            seen = statuses(log.read().decode(errors="replace"))
        if seen:
            return seen[0]
        assert time.monotonic() < deadline, f"the guest printed nothing in {console}"
        await asyncio.sleep(0.25)


async def _server(client: ComputeClient, server_id: str) -> dict[str, object]:
    reply = await client.get(f"/servers/{server_id}")
    assert reply.status == 200, reply
    server: dict[str, object] = reply.body["server"]
    return server


async def test_a_guest_runs_on_through_a_restart_of_libvirtd_and_its_host_serves_again(
    api: ComputeClient, realvm: RealCluster
) -> None:
    cluster = realvm
    server_id, first = await cluster.boot(api, "survivor")
    host = await cluster.host_of(server_id)
    daemon = cluster.daemons[host]
    domain = f"instance-{server_id}"
    (qemu,) = daemon.qemu_pids(domain)
    driver = _driver(cluster, host)
    before = driver.connection.reconnections

    console = await cluster.console_log(server_id)  # (asked of libvirtd while it is there)
    async with libvirtd_away(cluster, host):
        # the guest runs on without libvirtd: the same QEMU, printing on
        printed = await _prints_after(console, console.stat().st_size)
        assert printed.boot == first.boot and printed.up > first.up, printed
        assert daemon.qemu_pids(domain) == [qemu]
        # what the host is asked meanwhile fails at once, with a fault that says why
        started = time.monotonic()
        reply = await act(api, server_id, {"pause": None})
        assert reply.status == 202, reply
        await wait_until_action_done(cluster.pool, server_id, timeout_s=30)
        cluster.stopwatch.record(
            "pause while libvirtd is away → failed", time.monotonic() - started
        )
        assert (await actions_of(cluster.pool, server_id))[-1] == ("pause", "error")
        faults = await cluster.faults(server_id)
        assert any(re.search(r"libvirt at \S+ is unreachable", f) for f in faults), faults
        server = await _server(api, server_id)
        assert (server["status"], server["OS-EXT-STS:task_state"]) == ("ACTIVE", None), server

    await reconnected(cluster, driver, before)
    assert daemon.qemu_pids(domain) == [qemu]  # the new libvirtd took the guest over
    back = await cluster.mark(server_id)
    status = await cluster.wait_status(server_id, lambda s: s.up > first.up, since=back)
    assert status.boot == first.boot  # never restarted

    # the host serves again, through its new connection
    await cluster.act(api, server_id, {"pause": None}, until="PAUSED", timing="pause")
    await cluster.act(api, server_id, {"unpause": None}, until="ACTIVE", timing="unpause")
    assert daemon.qemu_pids(domain) == [qemu]

    # and hears the new libvirtd's events: a guest that powers itself off is SHUTOFF at once
    mark = await cluster.mark(server_id)
    await cluster.type_on_console(server_id, "\r")
    await cluster.wait_console(server_id, re.escape(cluster.guest.login_prompt), since=mark)
    await cluster.type_on_console(server_id, "root\r", timeout_s=30)
    await cluster.wait_console(server_id, "# ", since=mark, timeout_s=30)
    started = time.monotonic()
    await cluster.type_on_console(server_id, "poweroff\r")
    while (await _server(api, server_id))["status"] != "SHUTOFF":
        assert time.monotonic() - started < SHUTOFF_WITHIN_S, await _server(api, server_id)
        await asyncio.sleep(0.1)
    cluster.stopwatch.record("guest powers off → SHUTOFF (event)", time.monotonic() - started)

    mark = await cluster.mark(server_id)
    await cluster.act(
        api, server_id, {"reboot": {"type": "HARD"}}, until="ACTIVE", timing="reboot SHUTOFF"
    )
    again = await cluster.booted(server_id, since=mark)
    assert again.boot == first.boot + 1
    await cluster.delete(api, server_id)
    assert cluster.leftovers(server_id) == []


async def test_a_reboot_in_flight_when_libvirtd_restarts_ends_and_the_host_serves_again(
    api: ComputeClient, admin: ComputeClient, realvm: RealCluster
) -> None:
    cluster = realvm
    server_id, first = await cluster.boot(api, "interrupted")
    host = await cluster.host_of(server_id)
    driver = _driver(cluster, host)
    before = driver.connection.reconnections

    # a soft reboot, caught while the agent waits for the guest: it has pressed the
    # guest's power button, and the guest is shutting down
    mark = await cluster.mark(server_id)
    reply = await act(api, server_id, {"reboot": {"type": "SOFT"}})
    assert reply.status == 202, reply
    await cluster.wait_console(server_id, "power button pressed", since=mark, timeout_s=60)
    started = time.monotonic()
    async with libvirtd_away(cluster, host):
        pass
    await reconnected(cluster, driver, before)

    # the reboot ends: done, or failed with a fault; never stuck in its task
    await wait_until_action_done(cluster.pool, server_id, timeout_s=120)
    action, result = (await actions_of(cluster.pool, server_id))[-1]
    cluster.stopwatch.record(
        f"reboot in flight, libvirtd killed → reboot ended ({result})", time.monotonic() - started
    )
    assert action == "reboot" and result in ("success", "error"), (action, result)
    server = await _server(admin, server_id)
    assert server["OS-EXT-STS:task_state"] is None, server
    if result == "error":
        faults = await cluster.faults(server_id)
        assert any(re.search(r"libvirt at \S+ is unreachable", f) for f in faults), faults
        assert server["status"] == "ERROR", server
        # what an operator does after a failed action: the state reset, then a hard reboot
        reset = await act(admin, server_id, {"os-resetState": {"state": "active"}})
        assert reset.status == 202, reset
    else:
        assert server["status"] == "ACTIVE", server

    # the host serves: a hard reboot brings the guest up again
    mark = await cluster.mark(server_id)
    await cluster.act(
        api, server_id, {"reboot": {"type": "HARD"}}, until="ACTIVE", timing="reboot HARD → ACTIVE"
    )
    again = await cluster.booted(server_id, since=mark)
    assert again.boot > first.boot
    await cluster.answers_on_console(server_id)
    await cluster.delete(api, server_id)
    assert cluster.leftovers(server_id) == []
