"""python-novaclient, unchanged, against `stratus up`: the calls of chapter 2 a user makes."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from novaclient import exceptions
from novaclient.v2.client import Client as NovaClient
from novaclient.v2.servers import Server

from shared.db import seed
from tests.clients.conftest import nova

IMAGE = str(seed.image_id(seed.DEFAULT_IMAGES[0][0]))


@pytest.fixture
def client(stratus_up: str) -> NovaClient:
    return nova(stratus_up, f"nc{uuid.uuid4().hex[:8]}", "alice")


def wait_for(client: NovaClient, server_id: str, status: str, timeout_s: float = 30) -> Server:
    deadline = time.monotonic() + timeout_s
    server: Server = client.servers.get(server_id)
    while server.status != status:
        if time.monotonic() > deadline:
            raise AssertionError(f"{server_id} is {server.status}, never {status}")
        time.sleep(0.05)
        server = client.servers.get(server_id)
    return server


def wait_gone(client: NovaClient, server_id: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            client.servers.get(server_id)
        except exceptions.NotFound:
            return
        time.sleep(0.05)
    raise AssertionError(f"{server_id} was never deleted")


@pytest.fixture
def server(client: NovaClient) -> Iterator[Server]:
    created = client.servers.create("nova-client", IMAGE, "1", meta={"role": "test"})
    yield wait_for(client, created.id, "ACTIVE")
    client.servers.delete(created.id)
    wait_gone(client, created.id)


def test_flavors_and_limits(client: NovaClient) -> None:
    names = {f.name: f for f in client.flavors.list()}
    assert {"m1.tiny", "m1.small", "m1.medium", "m1.large", "m1.xlarge"} <= set(names)
    assert client.flavors.get("2").ram == 2048
    assert client.limits.get().absolute


def test_a_server_is_created_shown_listed_updated_and_deleted(
    client: NovaClient, server: Server
) -> None:
    assert server.metadata == {"role": "test"}
    assert server.addresses and all(server.addresses.values())
    assert [s.id for s in client.servers.list()] == [server.id]
    client.servers.update(server, name="renamed")
    assert client.servers.get(server.id).name == "renamed"
    assert client.servers.ips(server)


def test_metadata_is_set_and_deleted(client: NovaClient, server: Server) -> None:
    client.servers.set_meta(server, {"a": "1", "b": "2"})
    client.servers.delete_meta(server, ["a"])
    assert client.servers.get(server.id).metadata == {"role": "test", "b": "2"}


def test_reboot_soft_and_hard(client: NovaClient, server: Server) -> None:
    client.servers.reboot(server, reboot_type="SOFT")
    wait_for(client, server.id, "ACTIVE")
    client.servers.reboot(server, reboot_type="HARD")
    wait_for(client, server.id, "ACTIVE")


def test_rebuild_keeps_the_server_and_sets_its_name(client: NovaClient, server: Server) -> None:
    client.servers.rebuild(server, IMAGE, name="rebuilt")
    rebuilt = wait_for(client, server.id, "ACTIVE")
    assert rebuilt.name == "rebuilt"
    assert rebuilt.addresses == server.addresses


def test_resize_confirm_and_revert(client: NovaClient, server: Server) -> None:
    client.servers.resize(server, "2")
    wait_for(client, server.id, "VERIFY_RESIZE")
    client.servers.revert_resize(server)
    assert wait_for(client, server.id, "ACTIVE").flavor["id"] == "1"
    client.servers.resize(server, "2")
    wait_for(client, server.id, "VERIFY_RESIZE")
    client.servers.confirm_resize(server)
    assert wait_for(client, server.id, "ACTIVE").flavor["id"] == "2"


def test_create_image_and_change_password(client: NovaClient, server: Server) -> None:
    image_id = client.servers.create_image(server, "snap", metadata={"kind": "gold"})
    # the image service of the catalog is Stratus itself; novaclient no longer reads images,
    # so ask the compute endpoint directly
    deadline = time.monotonic() + 30
    while client.client.get(f"/images/{image_id}")[1]["image"]["status"] != "ACTIVE":
        assert time.monotonic() < deadline, "the snapshot never became ACTIVE"
        time.sleep(0.05)
    client.servers.change_password(server, "s3cret-Pass")
    wait_for(client, server.id, "ACTIVE")


def test_errors_come_back_as_the_client_expects(client: NovaClient) -> None:
    with pytest.raises(exceptions.NotFound):
        client.servers.get(str(uuid.uuid4()))
    with pytest.raises(exceptions.BadRequest):
        client.servers.create("bad", IMAGE, "no-such-flavor")


def test_keypairs_are_created_imported_listed_and_deleted(stratus_up: str) -> None:
    # key pairs are the user's: a user of its own
    client = nova(stratus_up, f"nc{uuid.uuid4().hex[:8]}", f"kp{uuid.uuid4().hex[:8]}")
    generated = client.keypairs.create("generated")
    assert generated.private_key.startswith("-----BEGIN RSA PRIVATE KEY-----")
    imported = client.keypairs.create("imported", public_key=generated.public_key)
    assert imported.fingerprint == generated.fingerprint
    assert sorted(k.name for k in client.keypairs.list()) == ["generated", "imported"]
    assert client.keypairs.get("imported").public_key == generated.public_key
    with pytest.raises(exceptions.Conflict):
        client.keypairs.create("generated")
    with pytest.raises(exceptions.BadRequest):
        client.keypairs.create("bad", public_key="not a key")
    client.keypairs.delete("generated")
    client.keypairs.delete(imported)
    assert client.keypairs.list() == []
    with pytest.raises(exceptions.NotFound):
        client.keypairs.get("generated")
