"""Hosts that share no image store (issue 14): a qcow2 uploaded through the image API boots on
one host from that host's own downloaded copy, a cold migration hands its disk over through the
gateway and boots it on the other from the other's copy, and once no server uses it, each
host's copy goes."""

from __future__ import annotations

import asyncio

from compute_agent.virt.libvirt.disks import backing_files
from tests.realvm.cluster import RealCluster
from tests.support.client import ComputeClient
from tests.support.image_service import uploaded_image


async def _upload_guest(api: ComputeClient, cluster: RealCluster) -> str:
    """The guest's disk as a new image, through the image API as `openstack image create
    --file` sends it."""
    data = await asyncio.to_thread(cluster.guest.disk.read_bytes)
    return await uploaded_image(api, data, "uploaded-guest")


def _copy_on(cluster: RealCluster, host: str, image_id: str) -> bool:
    return (cluster.image_caches[host] / image_id).is_file()


async def test_an_uploaded_image_boots_from_each_hosts_own_copy_which_goes_once_unused(
    api: ComputeClient, admin: ComputeClient, realvm: RealCluster
) -> None:
    cluster = realvm
    image_id = await _upload_guest(api, cluster)
    server_id, first = await cluster.boot(api, "uploaded", image=image_id, label="boot uploaded")
    source = await cluster.host_of(server_id)
    dest = cluster.other(source)
    own_copy = cluster.image_caches[source] / image_id
    assert own_copy.is_file() and not _copy_on(cluster, dest, image_id)
    assert own_copy in backing_files(cluster.instances_dirs[source])
    assert not any(
        cluster.store in p.parents for p in backing_files(cluster.instances_dirs[source])
    )

    mark = await cluster.mark(server_id)
    moved = await cluster.act(
        admin, server_id, {"migrate": None}, until="VERIFY_RESIZE", timing="migrate uploaded"
    )
    assert moved["OS-EXT-SRV-ATTR:host"] == dest
    arrived = await cluster.booted(server_id, since=mark)
    assert (arrived.boot, arrived.disk_sectors) == (2, first.disk_sectors)  # its own disk
    assert cluster.image_caches[dest] / image_id in backing_files(cluster.instances_dirs[dest])
    await cluster.act(
        admin, server_id, {"confirmResize": None}, until="ACTIVE", timing="confirm uploaded"
    )

    # no host ever needed the image store: theirs are empty
    for host in cluster.daemons:
        assert not any((cluster.image_caches[host].parent / "no-shared-store").glob("**/*"))
    await cluster.delete(api, server_id)
    assert (await api.delete(f"{api.url}/image/v2/images/{image_id}")).status == 204
    # once no disk uses it, a copy goes when it is older than the age the agent is given
    for host in cluster.daemons:
        removed = await cluster.drivers[host].remove_unused_images(0)
        assert image_id in removed, (host, removed)
        assert not _copy_on(cluster, host, image_id)
