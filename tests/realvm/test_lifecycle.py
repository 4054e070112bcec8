"""One real guest through its life: boot to the login prompt, soft and hard reboot, pause and
unpause, suspend and resume, a new password through its guest agent, and a delete that leaves
nothing behind. The guest's own console says what happened to it (deploy/guest/README.md):
the boot count of its disk, its uptime, the memory and disk it sees.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.realvm.cluster import GIB, RealCluster
from tests.support.client import ComputeClient

#: the domain type the suite asks the driver for (conftest: STRATUS_REALVM_VIRT_TYPE)
VIRT_TYPE = os.environ.get("STRATUS_REALVM_VIRT_TYPE", "qemu")


def backing_file(disk: Path) -> str | None:
    """The backing file of a qcow2 disk (read while a guest uses it)."""
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "-U", "--output=json", str(disk)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    backing: str | None = info.get("full-backing-filename") or info.get("backing-filename")
    return backing


async def test_a_guest_boots_reboots_pauses_suspends_and_leaves_nothing(
    api: ComputeClient, realvm: RealCluster
) -> None:
    cluster = realvm
    server_id, first = await cluster.boot(api, "life")
    assert first.boot == 1  # a fresh disk from the image
    assert 64 * 1024 < first.mem_kb <= 128 * 1024  # rv.tiny: 128 MB
    assert first.disk_sectors * 512 == 1 * GIB  # grown to the flavor's disk

    # a real QEMU domain whose root disk is an overlay on the host's own copy of the image
    # (downloaded from the image API: compute_agent/image_cache.py)
    host = await cluster.host_of(server_id)
    domain = ET.fromstring(await cluster.domain_xml(host, server_id))
    if VIRT_TYPE != "auto":
        assert domain.get("type") == VIRT_TYPE
    disk = Path(domain.findall("devices/disk/source")[0].get("file", ""))
    assert disk.is_relative_to(cluster.instances_dirs[host])
    assert backing_file(disk) == str(cluster.image_caches[host] / cluster.image_id)

    # soft reboot: the guest is asked (ACPI or its agent), shuts down in order, boots again
    mark = await cluster.mark(server_id)
    await cluster.act(
        api, server_id, {"reboot": {"type": "SOFT"}}, until="ACTIVE", timing="reboot SOFT → ACTIVE"
    )
    async with cluster.stopwatch.measure("reboot SOFT: ACTIVE → login prompt"):
        rebooted = await cluster.booted(server_id, since=mark)
    assert rebooted.boot == 2
    assert "stratus-guest: shutting down" in await cluster.console_since(server_id, mark)

    # hard reboot: the plug is pulled, nothing in the guest shuts down
    mark = await cluster.mark(server_id)
    await cluster.act(
        api, server_id, {"reboot": {"type": "HARD"}}, until="ACTIVE", timing="reboot HARD → ACTIVE"
    )
    async with cluster.stopwatch.measure("reboot HARD: ACTIVE → login prompt"):
        rebooted = await cluster.booted(server_id, since=mark)
    assert rebooted.boot == 3
    assert "shutting down" not in await cluster.console_since(server_id, mark)

    # pause: the guest is frozen (prints nothing); unpause: it goes on where it was
    before = await cluster.wait_status(server_id, lambda s: s.boot == 3, since=mark)
    await cluster.act(api, server_id, {"pause": None}, until="PAUSED", timing="pause")
    await asyncio.sleep(1)  # a line being written as it froze
    frozen = await cluster.mark(server_id)
    await asyncio.sleep(5)
    assert "stratus-guest:" not in await cluster.console_since(server_id, frozen)
    await cluster.act(api, server_id, {"unpause": None}, until="ACTIVE", timing="unpause")
    after = await cluster.wait_status(server_id, lambda s: s.up > before.up, since=frozen)
    assert after.boot == 3

    # suspend: the memory goes to the host's disk and QEMU stops; resume: the same boot
    # goes on (a restore, not a boot)
    await cluster.act(api, server_id, {"suspend": None}, until="SUSPENDED", timing="suspend")
    daemon = cluster.daemons[host]
    assert daemon.managed_save_files(), "no saved memory on the host"
    assert daemon.qemu_pids(f"instance-{server_id}") == [], "QEMU still runs"
    saved = await cluster.mark(server_id)
    await cluster.act(api, server_id, {"resume": None}, until="ACTIVE", timing="resume")
    resumed = await cluster.wait_status(server_id, lambda s: s.up > after.up, since=saved)
    assert resumed.boot == 3
    assert "login:" not in await cluster.console_since(server_id, saved)
    assert daemon.managed_save_files() == []

    # a new password, set by the guest agent inside the guest
    mark = await cluster.mark(server_id)
    await cluster.act(
        api,
        server_id,
        {"changePassword": {"adminPass": "n3w-Secret"}},
        until="ACTIVE",
        timing="changePassword (guest agent)",
    )
    await cluster.wait_console(
        server_id, "stratus-guest: password of root changed", since=mark, timeout_s=10
    )

    await cluster.delete(api, server_id)
    assert await cluster.domains() == {h: [] for h in cluster.daemons}
    assert cluster.leftovers(server_id) == []
