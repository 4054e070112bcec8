"""How an image boots travels with the images made of its servers: a createImage (or
createBackup) of a server whose image names a kernel gives the new image the same
``kernel``, ``initrd`` and ``cmdline`` metadata (compute_agent/virt/libvirt/images.py), unless
the request sets them itself; an image that names none passes nothing on."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from stratus.system import System
from tests.conftest import IMAGE
from tests.support.actions import act, active_server, wait_for_image, wait_until_action_done
from tests.support.client import ComputeClient

BOOT = {"kernel": "k-1.kernel", "initrd": "k-1.initrd", "cmdline": "console=ttyS0 quiet"}


@pytest.fixture
async def kernel_image(api: ComputeClient, system: System) -> AsyncIterator[str]:
    """A private image of the test's project that boots a kernel of its own."""
    assert system.pool is not None
    image_id = uuid.uuid4()
    await system.pool.execute(
        """INSERT INTO images (id, name, status, progress, owner, is_public, location)
           VALUES ($1, 'kernel-boot', 'active', 100, $2, false, 'k-1.qcow2')""",
        image_id,
        api.tenant,
    )
    await system.pool.executemany(
        "INSERT INTO image_metadata (image_id, key, value) VALUES ($1, $2, $3)",
        [(image_id, key, value) for key, value in {**BOOT, "os": "linux"}.items()],
    )
    yield str(image_id)
    await system.pool.execute("DELETE FROM images WHERE id = $1", image_id)


async def _image_of(api: ComputeClient, system: System, server_id: str, body: object) -> str:
    assert system.pool is not None
    reply = await act(api, server_id, body)
    assert reply.status == 202, reply
    image_id = reply.headers["Location"].rsplit("/", 1)[1]
    await wait_for_image(api, image_id, "ACTIVE")
    await wait_until_action_done(system.pool, server_id)
    return image_id


async def _metadata(api: ComputeClient, image_id: str) -> dict[str, str]:
    metadata: dict[str, str] = (await api.get(f"/images/{image_id}/metadata")).body["metadata"]
    return metadata


async def test_an_image_of_a_kernel_booted_server_boots_the_same_kernel(
    api: ComputeClient, system: System, kernel_image: str
) -> None:
    server_id = await active_server(api, "kernel-booted", kernel_image)
    snapshot = await _image_of(api, system, server_id, {"createImage": {"name": "snap"}})
    assert await _metadata(api, snapshot) == BOOT  # its boot, not the image's other metadata
    own = {"createImage": {"name": "own", "metadata": {"cmdline": "single", "note": "x"}}}
    custom = await _image_of(api, system, server_id, own)
    assert await _metadata(api, custom) == {**BOOT, "cmdline": "single", "note": "x"}
    backup = {"createBackup": {"name": "b", "backup_type": "daily", "rotation": 1}}
    assert await _metadata(api, await _image_of(api, system, server_id, backup)) == BOOT
    await api.delete_and_wait(server_id)


async def test_an_image_of_a_disk_booted_server_names_no_kernel(
    api: ComputeClient, system: System
) -> None:
    server_id = await active_server(api, "disk-booted", IMAGE)
    snapshot = await _image_of(api, system, server_id, {"createImage": {"name": "snap"}})
    assert await _metadata(api, snapshot) == {}
    await api.delete_and_wait(server_id)
