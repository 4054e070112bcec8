"""A host whose disk fills up (issue 17): a build there fails with a fault naming the full
directory, and leaves nothing behind, neither on the host (no domain, no instance directory,
no partial image in its cache) nor in the database (the server in ERROR holds no claim on the
host); once space is freed, the host builds again, from a whole copy of the image.

The host is a third one, started by this test: a libvirtd and an agent whose data directory
(instances and ``_base``) is a small tmpfs. It must be mounted before its libvirtd starts:
the daemon runs in a mount namespace of its own, a copy of ours taken when it starts
(tests/support/libvirtd.py), and QEMU must see the same file system as the agent. The agent
says its disk is far bigger than the tmpfs (``host_disk_gb``), as a host whose disk other
files fill says what the disk is, not what is left: the scheduler places the server, and the
disk fills up while the build writes.
"""

from __future__ import annotations

import asyncio
import filecmp
import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from compute_agent.simulation import AgentOptions
from shared.db import hosts
from shared.sealing import Keyring
from tests.realvm.cluster import BOOT_TIMEOUT_S, RealCluster
from tests.realvm.conftest import host_driver, host_settings
from tests.support import libvirtd
from tests.support.client import ComputeClient

FULL_HOST = "rv-full"
#: the tmpfs of that host's data: room for the guest's image (about 11 MB) and one server's
#: files (overlay, config drive, console log), not much more
TMPFS_SIZE = 64 * 1024**2
#: what its agent says its disk is
CLAIMED_DISK_GB = 10
NO_SPACE = os.strerror(28)  # ENOSPC: "No space left on device"


@dataclass(frozen=True)
class FullHost:
    """The host with the small disk: its directories, and a file that fills its tmpfs."""

    data_dir: Path
    instances_dir: Path
    image_cache: Path

    @property
    def filler(self) -> Path:
        return self.data_dir / "filler"

    def free_bytes(self) -> int:
        stat = os.statvfs(self.data_dir)
        return stat.f_bavail * stat.f_frsize

    def fill(self, leave: int) -> None:
        """Fill the tmpfs so that only ``leave`` bytes are left (allocated: tmpfs has no
        room for what a sparse file would not take)."""
        self.free()
        fd = os.open(self.filler, os.O_CREAT | os.O_WRONLY, 0o600)
        try:
            os.posix_fallocate(fd, 0, max(0, self.free_bytes() - leave))
        finally:
            os.close(fd)
        assert self.free_bytes() <= leave

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)


def _mount_tmpfs(path: Path, size: int) -> None:
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        check=True,
        capture_output=True,
        text=True,
    )


def _unmount(path: Path) -> None:
    subprocess.run(["umount", str(path)], check=True, capture_output=True, text=True)


async def _set_enabled(cluster: RealCluster, names: list[str], enabled: bool) -> None:
    async with cluster.pool.acquire() as conn:
        for name in names:
            await hosts.set_enabled(conn, name, enabled, reason="test_disk_full")


@pytest.fixture
async def full_host(
    realvm: RealCluster, admin: ComputeClient, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[FullHost]:
    """The host ``rv-full``, the only one builds go to while the test runs; its servers
    deleted, it disabled, its agent and daemon stopped and its tmpfs unmounted after."""
    cluster = realvm
    root = tmp_path_factory.mktemp("disk-full")
    settings = host_settings(cluster.system.settings, root, FULL_HOST).model_copy(
        update={"host_disk_gb": CLAIMED_DISK_GB}
    )
    settings.data_dir.mkdir()
    await asyncio.to_thread(_mount_tmpfs, settings.data_dir, TMPFS_SIZE)
    try:
        daemon = await asyncio.to_thread(libvirtd.start, FULL_HOST, root / "daemon")
        try:
            driver = host_driver(settings, daemon)
            assert cluster.system.bus is not None
            options = AgentOptions.of(settings, Keyring.from_setting(settings.message_key))
            agent = options.agent(FULL_HOST, cluster.system.bus, driver)
            await agent.start()
            others = list(cluster.daemons)
            try:
                await cluster.system.wait_for_hosts([FULL_HOST])
                cluster.add_host(
                    FULL_HOST,
                    daemon,
                    driver,
                    instances_dir=settings.instances_dir,
                    image_cache=settings.image_cache_dir,
                )
                await _set_enabled(cluster, others, False)
                yield FullHost(settings.data_dir, settings.instances_dir, settings.image_cache_dir)
            finally:
                await _delete_all(admin)
                await _set_enabled(cluster, [FULL_HOST], False)
                await _set_enabled(cluster, others, True)
                cluster.forget_host(FULL_HOST)
                await agent.stop()
        finally:
            await asyncio.to_thread(libvirtd.stop, daemon)
    finally:
        await asyncio.to_thread(_unmount, settings.data_dir)


async def _delete_all(admin: ComputeClient) -> None:
    """What a failed test left, deleted while the host's agent still runs."""
    listed = await admin.get("/servers")
    for server in listed.body["servers"]:
        await admin.delete(f"/servers/{server['id']}")
    for server in listed.body["servers"]:
        await admin.wait_for_status(server["id"], "DELETED", timeout_s=BOOT_TIMEOUT_S)


async def _usage(cluster: RealCluster) -> tuple[int, int, int]:
    row = await cluster.pool.fetchrow(
        "SELECT vcpus_used, ram_mb_used, disk_gb_used FROM compute_hosts WHERE name = $1",
        FULL_HOST,
    )
    assert row is not None
    return row["vcpus_used"], row["ram_mb_used"], row["disk_gb_used"]


async def _build_fails(api: ComputeClient, cluster: RealCluster, name: str) -> dict[str, Any]:
    """Create a server (on the full host, the only one enabled); it must end in ERROR."""
    reply = await api.create_server(name, cluster.image_id, "rv.tiny")
    assert reply.status == 202, reply
    server_id = reply.body["server"]["id"]
    server = await api.wait_for_status(server_id, "ERROR", timeout_s=BOOT_TIMEOUT_S)
    assert server.get("fault"), server
    return server


async def _left_nothing(
    cluster: RealCluster, host: FullHost, server_id: str, usage: tuple[int, int, int]
) -> None:
    """Nothing of the failed build is on the host, and the database holds the server in
    ERROR, with its fault and without a host or a claim on one."""
    assert cluster.leftovers(server_id) == []  # its directory, its domain's definition
    assert (await cluster.domains())[FULL_HOST] == []
    partials = [p.name for p in host.image_cache.glob(".*")] if host.image_cache.exists() else []
    assert partials == []  # no download left halfway
    assert [p.name for p in host.instances_dir.glob(".*")] == []
    row = await cluster.pool.fetchrow(
        "SELECT vm_state, task_state, host FROM servers WHERE id = $1", uuid.UUID(server_id)
    )
    assert row is not None
    assert (row["vm_state"], row["task_state"], row["host"]) == ("error", None, None)
    assert await _usage(cluster) == usage  # the claim was released
    migrations = await cluster.pool.fetchval(
        "SELECT count(*) FROM migrations WHERE server_id = $1", uuid.UUID(server_id)
    )
    assert migrations == 0


async def _delete(api: ComputeClient, cluster: RealCluster, server_id: str) -> None:
    """Deleting the server in ERROR works and leaves nothing of it but its deleted row."""
    await cluster.delete(api, server_id)
    addresses = await cluster.pool.fetchval(
        "SELECT count(*) FROM fixed_ips WHERE server_id = $1", uuid.UUID(server_id)
    )
    assert addresses == 0
    assert cluster.leftovers(server_id) == []


async def test_a_build_on_a_full_disk_fails_saying_so_and_leaves_nothing(
    api: ComputeClient, realvm: RealCluster, full_host: FullHost
) -> None:
    cluster, host = realvm, full_host
    usage = await _usage(cluster)
    image = cluster.guest.disk
    image_size = image.stat().st_size

    # nearly full: less room than the image's copy in the host's cache (_base) needs
    await asyncio.to_thread(host.fill, image_size // 2)
    failed = await _build_fails(api, cluster, "no-room-for-the-image")
    message = failed["fault"]["message"]
    assert message == (
        f"not enough disk space in {host.image_cache} on host {FULL_HOST}: {NO_SPACE}"
    ), failed["fault"]
    await _left_nothing(cluster, host, failed["id"], usage)
    # not half the image under its name, which every later build here would trust
    assert not (host.image_cache / cluster.image_id).exists()
    await _delete(api, cluster, failed["id"])

    # space freed: the host builds again, from a whole copy of the image
    await asyncio.to_thread(host.free)
    server_id, status = await cluster.boot(api, "room-again", label="boot after a full disk")
    assert await cluster.host_of(server_id) == FULL_HOST
    assert status.boot == 1
    cached = host.image_cache / cluster.image_id
    assert await asyncio.to_thread(filecmp.cmp, cached, image, shallow=False)
    await cluster.delete(api, server_id)
    assert await _usage(cluster) == usage

    # full to the last byte, the image cached: the root disk has no room in the instances
    # directory (qemu-img's complaint, named as what it is)
    await asyncio.to_thread(host.fill, 0)
    failed = await _build_fails(api, cluster, "no-room-for-the-disk")
    assert failed["fault"]["message"] == (
        f"not enough disk space in {host.instances_dir} on host {FULL_HOST}: {NO_SPACE}"
    ), failed["fault"]
    await _left_nothing(cluster, host, failed["id"], usage)
    assert await asyncio.to_thread(filecmp.cmp, cached, image, shallow=False)  # kept whole
    await _delete(api, cluster, failed["id"])
    await asyncio.to_thread(host.free)
