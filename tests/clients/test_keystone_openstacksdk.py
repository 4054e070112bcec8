"""openstacksdk (``conn.compute``, ``conn.image``) through Keystone."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import openstack
import pytest
from openstack.compute.v2.server import Server
from openstack.connection import Connection

from shared.db import seed
from tests.clients.conftest import KeystoneCloud

IMAGE_NAME = seed.DEFAULT_IMAGES[0][0]
pytestmark = pytest.mark.integration


def connect(cloud: KeystoneCloud, user: str) -> Connection:
    """A connection as ``user``, configured as a ``clouds.yaml`` entry would configure it."""
    who = cloud.keystone.users[user]
    return openstack.connect(
        auth_url=cloud.keystone.url,
        username=who.name,
        password=who.password,
        project_name=who.project,
        user_domain_id="default",
        project_domain_id="default",
        region_name="RegionOne",
    )


@pytest.fixture
def conn(keystone_cloud: KeystoneCloud) -> Connection:
    return connect(keystone_cloud, "demo")


def create(conn: Connection, name: str, **extra: object) -> Server:
    image = conn.image.find_image(IMAGE_NAME, ignore_missing=False)
    flavor = conn.compute.find_flavor("m1.tiny", ignore_missing=False)
    server = conn.compute.create_server(name=name, image_id=image.id, flavor_id=flavor.id, **extra)
    waited: Server = conn.compute.wait_for_server(server, wait=60, interval=0.5)
    return waited


def delete(conn: Connection, server: Server) -> None:
    conn.compute.delete_server(server)
    conn.compute.wait_for_delete(server, wait=60, interval=0.5)


@pytest.fixture
def server(conn: Connection) -> Iterator[Server]:
    created = create(conn, f"sdk-{uuid.uuid4().hex[:6]}", metadata={"role": "test"})
    yield created
    delete(conn, created)


def test_create_wait_show_and_delete(conn: Connection, server: Server) -> None:
    shown = conn.compute.get_server(server.id)
    assert (shown.status, shown.name, shown.metadata) == ("ACTIVE", server.name, {"role": "test"})
    assert shown.addresses
    assert shown.flavor["id"] == "1" or shown.flavor.get("original_name") == "m1.tiny"


def test_servers_with_filters_and_paging(conn: Connection) -> None:
    prefix = f"page-{uuid.uuid4().hex[:6]}"
    made = [create(conn, f"{prefix}-{i}") for i in range(3)]
    try:
        names = {s.name for s in conn.compute.servers(name=f"^{prefix}", limit=1)}
        assert names == {s.name for s in made}
        assert {s.id for s in conn.compute.servers(details=False, name=f"{prefix}-1")} == {
            made[1].id
        }
        assert list(conn.compute.servers(status="SHUTOFF", name=f"^{prefix}")) == []
    finally:
        for server in made:
            delete(conn, server)


def settle(conn: Connection, server: Server, wanted: str) -> Server:
    """Wait until the server shows ``wanted`` with no task running.

    openstacksdk's ``wait_for_server`` returns at once when the object it is handed already
    shows the status (a stale ACTIVE before a reboot starts), so poll the server itself."""
    deadline = time.monotonic() + 60
    while True:
        current: Server = conn.compute.get_server(server)
        if current.status == wanted and current.task_state is None:
            return current
        assert time.monotonic() < deadline, f"{server.id} is {current.status}, not {wanted}"
        time.sleep(0.2)


def test_actions(conn: Connection, server: Server) -> None:
    compute = conn.compute
    for act, wanted in (
        (lambda: compute.reboot_server(server, "SOFT"), "ACTIVE"),
        (lambda: compute.reboot_server(server, "HARD"), "ACTIVE"),
        (lambda: compute.pause_server(server), "PAUSED"),
        (lambda: compute.unpause_server(server), "ACTIVE"),
        (lambda: compute.suspend_server(server), "SUSPENDED"),
        (lambda: compute.resume_server(server), "ACTIVE"),
        (lambda: compute.stop_server(server), "SHUTOFF"),
        (lambda: compute.start_server(server), "ACTIVE"),
    ):
        act()
        settle(conn, server, wanted)
    conn.compute.resize_server(server, "2")
    settle(conn, server, "VERIFY_RESIZE")
    conn.compute.confirm_server_resize(server)
    resized = settle(conn, server, "ACTIVE")
    assert resized.flavor["id"] == "2" or resized.flavor.get("original_name") == "m1.small"


def test_snapshot_through_the_image_service(conn: Connection, server: Server) -> None:
    image = conn.compute.create_server_image(server, "sdk-snap", metadata={"kind": "gold"})
    image = conn.image.wait_for_status(image, status="active", wait=60, interval=0.5)
    found = conn.image.find_image("sdk-snap", ignore_missing=False)
    assert (found.id, found.visibility) == (image.id, "private")
    assert conn.compute.get_image(image.id).metadata == {"kind": "gold"}
    conn.compute.delete_image(image.id)
    assert conn.image.find_image(image.id) is None


def test_images_and_flavors(conn: Connection) -> None:
    assert IMAGE_NAME in {i.name for i in conn.compute.images()}
    assert IMAGE_NAME in {i.name for i in conn.image.images()}
    flavors = {f.name: f for f in conn.compute.flavors()}
    assert {"m1.tiny", "m1.small", "m1.medium", "m1.large", "m1.xlarge"} <= set(flavors)
    small = conn.compute.get_flavor("2")
    assert (small.ram, small.vcpus, small.disk) == (2048, 1, 20)


def test_metadata(conn: Connection, server: Server) -> None:
    conn.compute.set_server_metadata(server, a="1", b="2")
    conn.compute.delete_server_metadata(server, ["a"])
    assert conn.compute.fetch_server_metadata(server).metadata == {"role": "test", "b": "2"}


def test_another_project_cannot_see_or_touch_it(
    keystone_cloud: KeystoneCloud, server: Server
) -> None:
    other = connect(keystone_cloud, "alt_demo")
    assert [s.id for s in other.compute.servers()] == []
    assert other.compute.find_server(server.id) is None
    with pytest.raises(openstack.exceptions.NotFoundException):
        other.compute.delete_server(server.id, ignore_missing=False)
