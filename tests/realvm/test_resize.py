"""Resize of a real guest, reverted and confirmed: the guest comes up with the new flavor's
memory and disk, a revert brings back the original disk as it was (its boot count shows it is
the original, not the resized copy), and a confirm leaves nothing of the original.
"""

from __future__ import annotations

from tests.realvm.cluster import GIB, RealCluster
from tests.support.client import ComputeClient

TINY_DISK = 1 * GIB // 512
SMALL_DISK = 2 * GIB // 512


async def assert_only_its_directory(cluster: RealCluster, server_id: str) -> None:
    """The server's files are its own directory on its host: no original kept aside, no
    disk on its way, nothing on the other host."""
    host = await cluster.host_of(server_id)
    files = cluster.instance_files(server_id)
    assert files == [f"{host}: {cluster.instances_dirs[host] / server_id}"], files


async def test_a_resized_guest_sees_its_new_flavor_and_a_revert_brings_the_original_back(
    api: ComputeClient, realvm: RealCluster
) -> None:
    cluster = realvm
    server_id, first = await cluster.boot(api, "grower", flavor="rv.tiny")
    assert (first.boot, first.disk_sectors) == (1, TINY_DISK)

    # resize to rv.small, then revert
    mark = await cluster.mark(server_id)
    resized = await cluster.act(
        api,
        server_id,
        {"resize": {"flavorRef": "rv.small"}},
        until="VERIFY_RESIZE",
        timing="resize → VERIFY_RESIZE",
    )
    assert resized["flavor"]["id"] == "rv.small"
    async with cluster.stopwatch.measure("resize: VERIFY_RESIZE → login prompt"):
        bigger = await cluster.booted(server_id, since=mark)
    assert bigger.disk_sectors == SMALL_DISK
    assert bigger.mem_kb > first.mem_kb  # 192 MB instead of 128
    assert bigger.boot == 2  # the resized copy of the disk boots

    mark = await cluster.mark(server_id)
    reverted = await cluster.act(
        api, server_id, {"revertResize": None}, until="ACTIVE", timing="revertResize → ACTIVE"
    )
    assert reverted["flavor"]["id"] == "rv.tiny"
    async with cluster.stopwatch.measure("revertResize: ACTIVE → login prompt"):
        original = await cluster.booted(server_id, since=mark)
    assert (original.disk_sectors, original.mem_kb) == (TINY_DISK, first.mem_kb)
    assert original.boot == 2  # the original disk (booted once), not the copy (twice)
    await assert_only_its_directory(cluster, server_id)

    # resize again, and confirm
    mark = await cluster.mark(server_id)
    await cluster.act(
        api,
        server_id,
        {"resize": {"flavorRef": "rv.small"}},
        until="VERIFY_RESIZE",
        timing="resize → VERIFY_RESIZE",
    )
    async with cluster.stopwatch.measure("resize: VERIFY_RESIZE → login prompt"):
        bigger = await cluster.booted(server_id, since=mark)
    assert (bigger.boot, bigger.disk_sectors) == (3, SMALL_DISK)
    confirmed = await cluster.act(
        api, server_id, {"confirmResize": None}, until="ACTIVE", timing="confirmResize → ACTIVE"
    )
    assert confirmed["flavor"]["id"] == "rv.small"
    # the guest ran on through the confirmation; only the server's own files are left
    mark = await cluster.mark(server_id)
    still = await cluster.wait_status(server_id, lambda s: s.up > bigger.up, since=mark)
    assert still.boot == 3
    await assert_only_its_directory(cluster, server_id)

    await cluster.delete(api, server_id)
    assert cluster.leftovers(server_id) == []
