"""The libvirt driver's own checks on real QEMU guests (the driver engineer's; the rest of the
suite, its fixtures and its cluster are the environment's, tests/realvm/conftest.py):

- a guest that powers itself off is SHUTOFF at once (libvirt's lifecycle event, reported by
  its agent), and a reboot brings it back;
- the network actions, which go through the guest agent, leave the server ACTIVE whatever
  the guest can do, with a fault that says why when it cannot;
- an image whose metadata names a kernel boots it directly, and an image made of such a
  server inherits that metadata.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
import xml.etree.ElementTree as ET

from shared.image_data.filesystem import DirectoryImageData
from stratus.images import ImageFile, import_image
from tests.realvm.cluster import RealCluster
from tests.support.actions import act, actions_of, wait_for_image, wait_until_action_done
from tests.support.client import ComputeClient

#: how long after the guest's power-off the API may still show it running
SHUTOFF_WITHIN_S = 15.0


async def _status(client: ComputeClient, server_id: str) -> tuple[str, str, int]:
    server = (await client.get(f"/servers/{server_id}")).body["server"]
    return server["status"], server["OS-EXT-STS:vm_state"], server["OS-EXT-STS:power_state"]


async def test_a_guest_that_powers_itself_off_is_shutoff_at_once(
    api: ComputeClient, realvm: RealCluster
) -> None:
    cluster = realvm
    server_id, _ = await cluster.boot(api, "self-stopper")
    mark = await cluster.mark(server_id)
    await cluster.type_on_console(server_id, "\r")
    await cluster.wait_console(server_id, re.escape(cluster.guest.login_prompt), since=mark)
    await cluster.type_on_console(server_id, "root\r")
    await asyncio.sleep(1.0)
    started = time.monotonic()
    await cluster.type_on_console(server_id, "poweroff\r")
    while await _status(api, server_id) != ("SHUTOFF", "stopped", 4):
        assert time.monotonic() - started < SHUTOFF_WITHIN_S, await _status(api, server_id)
        await asyncio.sleep(0.1)
    cluster.stopwatch.record("guest powers off → SHUTOFF (event)", time.monotonic() - started)
    assert [a for a, _ in await actions_of(cluster.pool, server_id)] == ["create"]

    mark = await cluster.mark(server_id)
    await cluster.act(
        api, server_id, {"reboot": {"type": "HARD"}}, until="ACTIVE", timing="reboot SHUTOFF"
    )
    again = await cluster.booted(server_id, since=mark)
    assert again.boot == 2
    await cluster.delete(api, server_id)
    assert cluster.leftovers(server_id) == []


async def test_network_actions_through_the_guest_agent_leave_the_server_active(
    api: ComputeClient, admin: ComputeClient, realvm: RealCluster
) -> None:
    cluster = realvm
    server_id, first = await cluster.boot(api, "networked")
    for action in ("injectNetworkInfo", "resetNetwork"):
        reply = await act(admin, server_id, {action: None})
        assert reply.status == 202, reply
        await wait_until_action_done(cluster.pool, server_id, 60)
        assert await _status(api, server_id) == ("ACTIVE", "active", 1)
        outcome = (await actions_of(cluster.pool, server_id))[-1]
        if outcome == (action, "error"):  # the guest's agent cannot write the file
            fault = await cluster.pool.fetchval(
                "SELECT message FROM server_faults WHERE server_id = $1 ORDER BY id DESC",
                uuid.UUID(server_id),
            )
            assert "/etc/stratus-network.json" in fault and "guest" in fault, fault
        else:
            assert outcome == (action, "success")
    mark = await cluster.mark(server_id)  # the guest runs on, never restarted
    still = await cluster.wait_status(server_id, lambda s: s.up > first.up, since=mark)
    assert still.boot == 1
    await cluster.delete(api, server_id)


async def test_an_image_that_names_a_kernel_boots_it_and_passes_it_on(
    api: ComputeClient, realvm: RealCluster
) -> None:
    cluster = realvm
    guest = cluster.guest
    async with cluster.pool.acquire() as conn:
        imported = await import_image(
            conn,
            DirectoryImageData(cluster.store),
            ImageFile(
                name=f"kernel-boot-{uuid.uuid4().hex[:6]}",
                path=guest.disk,
                kernel=guest.directory / "vmlinuz",
                initrd=guest.directory / "initrd.img",
                cmdline=(guest.directory / "cmdline").read_text().strip(),
            ),
        )
    server_id, first = await cluster.boot(
        api, "kernel-booted", image=str(imported.id), label="boot (direct kernel)"
    )
    assert first.boot == 1
    host = await cluster.host_of(server_id)
    domain = ET.fromstring(await cluster.domain_xml(host, server_id))
    # the host's own copies of the store's files, fetched through the gateway
    own = cluster.image_caches[host]
    assert domain.findtext("os/kernel") == str(own / f"file-{imported.id}.kernel")
    assert domain.findtext("os/initrd") == str(own / f"file-{imported.id}.initrd")
    assert "SYSLINUX" not in await cluster.console_since(server_id)  # no boot loader ran

    reply = await act(api, server_id, {"createImage": {"name": "of-a-kernel-boot"}})
    assert reply.status == 202, reply
    image_id = reply.headers["Location"].rsplit("/", 1)[1]
    await wait_for_image(api, image_id, "ACTIVE", timeout_s=120)
    metadata = (await api.get(f"/images/{image_id}/metadata")).body["metadata"]
    assert {k: metadata.get(k) for k in ("kernel", "initrd")} == {
        "kernel": f"{imported.id}.kernel",
        "initrd": f"{imported.id}.initrd",
    }
    await wait_until_action_done(cluster.pool, server_id, 120)
    await cluster.delete(api, server_id)
    assert cluster.leftovers(server_id) == []
