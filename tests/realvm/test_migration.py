"""Moving real guests between the two hosts (each with an instances directory of its own: no
storage is shared). A cold migration powers the guest off and boots its disk on the other
host; a live block migration moves it running, disk and memory, and it goes on answering on
its console; a live migration that would need shared storage fails, and the guest runs on
where it was.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.realvm.cluster import GuestStatus, RealCluster
from tests.support.actions import act, wait_until_action_done
from tests.support.client import ComputeClient


def live(host: str, *, block: bool) -> dict[str, Any]:
    return {"os-migrateLive": {"host": host, "block_migration": block, "disk_over_commit": False}}


def up_longer_than(earlier: GuestStatus) -> Callable[[GuestStatus], bool]:
    return lambda status: status.up > earlier.up


async def assert_only_on(cluster: RealCluster, server_id: str, host: str) -> None:
    """The server's domain and files are on ``host``, and nothing of it on the other."""
    domains = await cluster.domains()
    assert domains == {
        h: [f"instance-{server_id}"] if h == host else [] for h in cluster.daemons
    }, domains
    files = cluster.instance_files(server_id)
    assert files == [f"{host}: {cluster.instances_dirs[host] / server_id}"], files


async def test_a_cold_migration_boots_the_disk_on_the_other_host(
    api: ComputeClient, admin: ComputeClient, realvm: RealCluster
) -> None:
    cluster = realvm
    server_id, first = await cluster.boot(api, "cold")
    source = await cluster.host_of(server_id)
    dest = cluster.other(source)

    mark = await cluster.mark(server_id)
    moved = await cluster.act(
        admin, server_id, {"migrate": None}, until="VERIFY_RESIZE", timing="migrate → VERIFY_RESIZE"
    )
    assert moved["OS-EXT-SRV-ATTR:host"] == dest
    async with cluster.stopwatch.measure("migrate: VERIFY_RESIZE → login prompt"):
        arrived = await cluster.booted(server_id, since=mark)
    assert (arrived.boot, arrived.disk_sectors) == (2, first.disk_sectors)  # its own disk

    await cluster.act(
        admin,
        server_id,
        {"confirmResize": None},
        until="ACTIVE",
        timing="confirmResize (migrate) → ACTIVE",
    )
    await assert_only_on(cluster, server_id, dest)
    await cluster.delete(api, server_id)
    assert cluster.leftovers(server_id) == []


async def test_a_live_migration_moves_a_running_guest_and_back(
    api: ComputeClient, admin: ComputeClient, realvm: RealCluster
) -> None:
    cluster = realvm
    server_id, first = await cluster.boot(api, "traveller")
    home = await cluster.host_of(server_id)
    away = cluster.other(home)

    # without shared storage the other host has no disk to run it from: refused, the guest
    # runs on at home
    reply = await act(admin, server_id, live(away, block=False))
    if reply.status == 202:
        async with cluster.stopwatch.measure("os-migrateLive (no shared storage) → refused"):
            await wait_until_action_done(cluster.pool, server_id, 120)
    else:
        assert reply.status == 400, reply
    assert (await api.get(f"/servers/{server_id}")).body["server"]["status"] == "ACTIVE"
    await assert_only_on(cluster, server_id, home)
    mark = await cluster.mark(server_id)
    still = await cluster.wait_status(server_id, lambda s: s.up > first.up, since=mark)
    assert still.boot == 1

    last = still
    for source, dest in ((home, away), (away, home)):
        await cluster.act(
            admin,
            server_id,
            live(dest, block=True),
            until="ACTIVE",
            timing="os-migrateLive (block) → ACTIVE",
        )
        assert await cluster.host_of(server_id) == dest
        await assert_only_on(cluster, server_id, dest)
        # the same guest, never restarted: its uptime goes on, and it answers its console
        mark = await cluster.mark(server_id)
        after = await cluster.wait_status(server_id, up_longer_than(last), since=mark)
        assert after.boot == 1, f"the guest rebooted moving from {source} to {dest}"
        async with cluster.stopwatch.measure("console login and a command, after a move"):
            await cluster.answers_on_console(server_id)
        last = after

    await cluster.delete(api, server_id)
    assert cluster.leftovers(server_id) == []
