"""Images of running guests: createImage, a second server booted from that image, and
createBackup with its rotation. Each image is a standalone qcow2 file in the image store, made
while the guest runs on; a server built from it boots the disk its origin had (the boot count
on the disk goes on from the origin's).
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

from tests.realvm.cluster import GIB, RealCluster
from tests.support.actions import act, wait_for_image, wait_until_action_done
from tests.support.client import ComputeClient

#: how long writing an image of a small guest may take
IMAGE_TIMEOUT_S = 120.0


def image_info(path: Path) -> dict[str, Any]:
    info: dict[str, Any] = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", str(path)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    return info


async def image_file(cluster: RealCluster, image_id: str) -> Path:
    location: str | None = await cluster.pool.fetchval(
        "SELECT location FROM images WHERE id = $1", uuid.UUID(image_id)
    )
    assert location, f"image {image_id} has no file"
    return cluster.store / location


async def assert_standalone_image(cluster: RealCluster, image_id: str) -> None:
    """The image is a qcow2 file of its own in the store: no backing file (never an overlay
    on the base image, which may go), as big as the server's disk (rv.tiny: 1 GB)."""
    info = image_info(await image_file(cluster, image_id))
    assert info["format"] == "qcow2"
    assert "backing-filename" not in info
    assert info["virtual-size"] == 1 * GIB


async def test_an_image_of_a_running_guest_boots_a_server_with_its_disk(
    api: ComputeClient, realvm: RealCluster
) -> None:
    cluster = realvm
    origin, first = await cluster.boot(api, "origin")
    assert first.boot == 1

    async with cluster.stopwatch.measure("createImage → image ACTIVE"):
        reply = await act(api, origin, {"createImage": {"name": "origin-image"}})
        assert reply.status == 202, reply
        image_id: str = reply.headers["Location"].rsplit("/", 1)[1]
        await wait_for_image(api, image_id, "ACTIVE", timeout_s=IMAGE_TIMEOUT_S)
    await wait_until_action_done(cluster.pool, origin, IMAGE_TIMEOUT_S)
    await assert_standalone_image(cluster, image_id)
    # the origin ran on all along (the same boot), and still does
    mark = await cluster.mark(origin)
    still = await cluster.wait_status(origin, lambda s: s.up > first.up, since=mark)
    assert still.boot == 1
    assert (await api.get(f"/servers/{origin}")).body["server"]["status"] == "ACTIVE"

    # a server from the image: its disk is the origin's, which had booted once
    copy, copied = await cluster.boot(api, "copy", image=image_id, label="boot from createImage")
    assert copied.boot == 2
    assert (await api.get(f"/servers/{copy}")).body["server"]["image"]["id"] == image_id

    for server_id in (origin, copy):
        await cluster.delete(api, server_id)
        assert cluster.leftovers(server_id) == []


async def _backup(cluster: RealCluster, api: ComputeClient, server_id: str, name: str) -> str:
    """A daily backup kept among the last 2; its id once it is ACTIVE."""
    async with cluster.stopwatch.measure("createBackup → image ACTIVE"):
        body = {"createBackup": {"name": name, "backup_type": "daily", "rotation": 2}}
        reply = await act(api, server_id, body)
        assert reply.status == 202, reply
        image_id: str = reply.headers["Location"].rsplit("/", 1)[1]
        await wait_for_image(api, image_id, "ACTIVE", timeout_s=IMAGE_TIMEOUT_S)
    await wait_until_action_done(cluster.pool, server_id, IMAGE_TIMEOUT_S)
    return image_id


async def test_backups_of_a_running_guest_rotate(api: ComputeClient, realvm: RealCluster) -> None:
    cluster = realvm
    server_id, first = await cluster.boot(api, "backed-up")
    backups = [await _backup(cluster, api, server_id, f"daily-{i}") for i in range(3)]
    for image_id in backups[1:]:
        await assert_standalone_image(cluster, image_id)

    listed = await api.get(f"/images/detail?server={server_id}&type=backup")
    assert sorted(i["id"] for i in listed.body["images"]) == sorted(backups[1:])
    assert (await api.get(f"/images/{backups[0]}")).status == 404  # rotated away

    # the guest ran on through its backups
    mark = await cluster.mark(server_id)
    status = await cluster.wait_status(server_id, lambda s: s.up > first.up, since=mark)
    assert status.boot == 1
    await cluster.delete(api, server_id)
    assert cluster.leftovers(server_id) == []
