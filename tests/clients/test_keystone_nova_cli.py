"""The ``nova`` command (python-novaclient) through Keystone: every command a user of the
compute API runs, resolving images through the catalog's image service."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from compute_agent.virt.factory import libvirt_available
from shared.db import seed
from tests.clients.cli import CommandFailed, eventually, listing, table
from tests.clients.conftest import KEYSTONE_HOSTS, KeystoneCloud
from tests.support.missing import LIBVIRT_BINDING

IMAGE_NAME = seed.DEFAULT_IMAGES[0][0]
pytestmark = pytest.mark.integration


def status(cloud: KeystoneCloud, user: str, server_id: str) -> dict[str, str]:
    return table(cloud.nova(user, "show", server_id))


def wait_for(cloud: KeystoneCloud, user: str, server_id: str, wanted: str) -> dict[str, str]:
    shown: dict[str, str] = {}

    def reached() -> bool:
        nonlocal shown
        shown = status(cloud, user, server_id)
        return shown["status"] == wanted

    eventually(reached, f"{server_id} {wanted}")
    return shown


def boot(cloud: KeystoneCloud, user: str, name: str) -> str:
    shown = table(
        cloud.nova(user, "boot", "--image", IMAGE_NAME, "--flavor", "m1.tiny", "--poll", name)
    )
    return shown["id"]


def delete(cloud: KeystoneCloud, user: str, server_id: str) -> None:
    cloud.nova(user, "delete", server_id)

    def gone() -> bool:
        try:
            status(cloud, user, server_id)
        except CommandFailed:
            return True
        return False

    eventually(gone, f"{server_id} deleted")


@pytest.fixture
def server(keystone_cloud: KeystoneCloud) -> Iterator[str]:
    server_id = boot(keystone_cloud, "demo", f"ks-{uuid.uuid4().hex[:6]}")
    yield server_id
    delete(keystone_cloud, "demo", server_id)


def test_boot_list_show_rename_and_delete(keystone_cloud: KeystoneCloud, server: str) -> None:
    shown = status(keystone_cloud, "demo", server)
    assert (shown["status"], shown["image"].split(" (")[0]) == ("ACTIVE", IMAGE_NAME)
    assert shown["tenant_id"] == keystone_cloud.keystone.projects["demo"]
    assert server in [row["ID"] for row in listing(keystone_cloud.nova("demo", "list"))]
    keystone_cloud.nova("demo", "update", "--name", "renamed", server)
    assert status(keystone_cloud, "demo", server)["name"] == "renamed"


def test_reboot_soft_and_hard(keystone_cloud: KeystoneCloud, server: str) -> None:
    keystone_cloud.nova("demo", "reboot", "--poll", server)
    keystone_cloud.nova("demo", "reboot", "--hard", "--poll", server)
    assert status(keystone_cloud, "demo", server)["status"] == "ACTIVE"


def test_rebuild_by_image_name(keystone_cloud: KeystoneCloud, server: str) -> None:
    keystone_cloud.nova("demo", "rebuild", "--name", "rebuilt", "--poll", server, IMAGE_NAME)
    shown = wait_for(keystone_cloud, "demo", server, "ACTIVE")
    assert shown["name"] == "rebuilt"


def test_resize_then_revert_then_confirm(keystone_cloud: KeystoneCloud, server: str) -> None:
    keystone_cloud.nova("demo", "resize", "--poll", server, "m1.small")
    wait_for(keystone_cloud, "demo", server, "VERIFY_RESIZE")
    keystone_cloud.nova("demo", "resize-revert", server)
    assert wait_for(keystone_cloud, "demo", server, "ACTIVE")["flavor"].startswith("m1.tiny")
    keystone_cloud.nova("demo", "resize", "--poll", server, "m1.small")
    wait_for(keystone_cloud, "demo", server, "VERIFY_RESIZE")
    keystone_cloud.nova("demo", "resize-confirm", server)
    assert wait_for(keystone_cloud, "demo", server, "ACTIVE")["flavor"].startswith("m1.small")


def test_image_create_waits_through_the_image_service(
    keystone_cloud: KeystoneCloud, server: str
) -> None:
    keystone_cloud.nova("demo", "image-create", "--poll", "--metadata", "kind=gold", server, "snap")
    session = keystone_cloud.keystone.session("demo")
    images = session.get("/v2/images?name=snap", endpoint_filter={"service_type": "image"}).json()[
        "images"
    ]
    (image,) = images
    assert (image["status"], image["kind"], image["visibility"]) == ("active", "gold", "private")
    session.delete(f"/images/{image['id']}", endpoint_filter={"service_type": "compute"})


def test_meta_is_set_and_deleted(keystone_cloud: KeystoneCloud, server: str) -> None:
    keystone_cloud.nova("demo", "meta", server, "set", "a=1", "b=2")
    keystone_cloud.nova("demo", "meta", server, "delete", "a")
    assert status(keystone_cloud, "demo", server)["metadata"] == '{"b": "2"}'


def test_pause_unpause_suspend_resume_stop_start(
    keystone_cloud: KeystoneCloud, server: str
) -> None:
    for command, wanted in (
        ("pause", "PAUSED"),
        ("unpause", "ACTIVE"),
        ("suspend", "SUSPENDED"),
        ("resume", "ACTIVE"),
        ("stop", "SHUTOFF"),
        ("start", "ACTIVE"),
    ):
        keystone_cloud.nova("demo", command, server)
        wait_for(keystone_cloud, "demo", server, wanted)


def test_lock_and_unlock_by_the_owner_and_an_administrator(
    keystone_cloud: KeystoneCloud, server: str
) -> None:
    """The owner locks its own server (nova 2013.2's default) and its changes are refused
    until it unlocks; an administrator's lock is not the owner's to lift."""
    keystone_cloud.nova("demo", "lock", server)
    with pytest.raises(CommandFailed, match="409"):
        keystone_cloud.nova("demo", "stop", server)
    keystone_cloud.nova("demo", "unlock", server)
    keystone_cloud.nova("admin_in_demo", "lock", server)
    with pytest.raises(CommandFailed, match="403"):
        keystone_cloud.nova("demo", "unlock", server)
    with pytest.raises(CommandFailed, match="409"):
        keystone_cloud.nova("demo", "stop", server)
    keystone_cloud.nova("admin_in_demo", "unlock", server)
    keystone_cloud.nova("demo", "reboot", "--poll", server)


def test_backup_keeps_its_rotation(keystone_cloud: KeystoneCloud, server: str) -> None:
    session = keystone_cloud.keystone.session("demo")
    compute = {"service_type": "compute"}
    for i in range(3):
        keystone_cloud.nova("demo", "backup", server, f"nightly-{i}", "daily", "2")

        def idle() -> bool:
            return status(keystone_cloud, "demo", server)["OS-EXT-STS:task_state"] == "-"

        eventually(idle, "the backup is done")
    images = session.get(
        f"/images/detail?server={server}&type=backup", endpoint_filter=compute
    ).json()["images"]
    assert sorted(i["name"] for i in images) == ["nightly-1", "nightly-2"]
    for image in images:
        session.delete(f"/images/{image['id']}", endpoint_filter=compute)


def _host(cloud: KeystoneCloud, server: str) -> str:
    return status(cloud, "admin_in_demo", server)["OS-EXT-SRV-ATTR:host"]


def test_migrate_by_an_administrator(keystone_cloud: KeystoneCloud, server: str) -> None:
    source = _host(keystone_cloud, server)
    keystone_cloud.nova("admin_in_demo", "migrate", "--poll", server)
    wait_for(keystone_cloud, "admin_in_demo", server, "VERIFY_RESIZE")
    keystone_cloud.nova("admin_in_demo", "resize-confirm", server)
    wait_for(keystone_cloud, "admin_in_demo", server, "ACTIVE")
    assert _host(keystone_cloud, server) != source
    migrations = listing(keystone_cloud.nova("admin", "migration-list"))
    assert source in {m["Source Compute"] for m in migrations}


@pytest.mark.skipif(
    not libvirt_available(),
    reason=f"live migration between agent processes needs {LIBVIRT_BINDING}",
)
def test_live_migration_by_an_administrator(keystone_cloud: KeystoneCloud, server: str) -> None:
    source = _host(keystone_cloud, server)
    target = next(h for h in KEYSTONE_HOSTS if h != source)
    keystone_cloud.nova("admin_in_demo", "live-migration", server, target)

    def moved() -> bool:
        shown = status(keystone_cloud, "admin_in_demo", server)
        return (shown["status"], shown["OS-EXT-SRV-ATTR:host"]) == ("ACTIVE", target)

    eventually(moved, "the server runs on the other host")
    migrations = listing(keystone_cloud.nova("admin", "migration-list"))
    assert source in {m["Source Compute"] for m in migrations}


def test_reset_state_by_an_administrator(keystone_cloud: KeystoneCloud, server: str) -> None:
    with pytest.raises(CommandFailed, match="403"):
        keystone_cloud.nova("demo", "reset-state", server)
    keystone_cloud.nova("admin_in_demo", "reset-state", server)
    assert status(keystone_cloud, "demo", server)["status"] == "ERROR"
    keystone_cloud.nova("admin_in_demo", "reset-state", "--active", server)
    assert status(keystone_cloud, "demo", server)["status"] == "ACTIVE"


def test_limits_and_flavors(keystone_cloud: KeystoneCloud) -> None:
    limits = listing(keystone_cloud.nova("demo", "limits"))
    assert "Instances" in {row["Name"] for row in limits}
    flavors = {row["Name"]: row for row in listing(keystone_cloud.nova("demo", "flavor-list"))}
    assert {"m1.tiny", "m1.small", "m1.medium", "m1.large", "m1.xlarge"} <= set(flavors)
    shown = table(keystone_cloud.nova("demo", "flavor-show", "m1.small"))
    assert (shown["ram"], shown["extra_specs"]) == ("2048", "{}")


def test_another_project_cannot_see_or_touch_demos_servers(
    keystone_cloud: KeystoneCloud, server: str
) -> None:
    assert listing(keystone_cloud.nova("alt_demo", "list")) == []
    for command in (("show", server), ("delete", server), ("reboot", server)):
        with pytest.raises(CommandFailed, match="No server with a name or ID"):
            keystone_cloud.nova("alt_demo", *command)
    assert status(keystone_cloud, "demo", server)["status"] == "ACTIVE"
