"""The ``openstack`` command (python-openstackclient) through Keystone, configured by a
``clouds.yaml`` as README.md shows it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.db import seed
from tests.clients.cli import CommandFailed, as_json, eventually, openstack
from tests.clients.conftest import KeystoneCloud

IMAGE_NAME = seed.DEFAULT_IMAGES[0][0]
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def clouds_yaml(keystone_cloud: KeystoneCloud, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clouds.yaml with one cloud per user of the Keystone cloud."""
    path = tmp_path_factory.mktemp("clouds") / "clouds.yaml"
    return keystone_cloud.clouds_yaml(path, ("demo", "alt_demo", "admin_in_demo"))


def show(clouds_yaml: Path, server_id: str, cloud: str = "demo") -> Any:
    return as_json(openstack(clouds_yaml, cloud, "server", "show", "-f", "json", server_id))


@pytest.fixture
def server(clouds_yaml: Path) -> Iterator[str]:
    created = as_json(
        openstack(
            clouds_yaml,
            "demo",
            "server",
            "create",
            "--image",
            IMAGE_NAME,
            "--flavor",
            "m1.tiny",
            "--property",
            "role=test",
            "--wait",
            "-f",
            "json",
            f"osc-{uuid.uuid4().hex[:6]}",
        )
    )
    assert created["status"] == "ACTIVE"
    yield created["id"]
    openstack(clouds_yaml, "demo", "server", "delete", "--wait", created["id"])


def test_create_list_show_set_and_delete(clouds_yaml: Path, server: str) -> None:
    listed = as_json(openstack(clouds_yaml, "demo", "server", "list", "-f", "json"))
    assert server in [s["ID"] for s in listed]
    openstack(
        clouds_yaml, "demo", "server", "set", "--name", "renamed", "--property", "a=1", server
    )
    shown = show(clouds_yaml, server)
    assert (shown["name"], shown["status"]) == ("renamed", "ACTIVE")
    assert shown["properties"] in ({"role": "test", "a": "1"}, "a='1', role='test'")


def test_reboot_pause_unpause_suspend_resume_stop_start(clouds_yaml: Path, server: str) -> None:
    openstack(clouds_yaml, "demo", "server", "reboot", "--soft", "--wait", server)
    openstack(clouds_yaml, "demo", "server", "reboot", "--hard", "--wait", server)
    for command, status in (
        ("pause", "PAUSED"),
        ("unpause", "ACTIVE"),
        ("suspend", "SUSPENDED"),
        ("resume", "ACTIVE"),
        ("stop", "SHUTOFF"),
        ("start", "ACTIVE"),
    ):
        openstack(clouds_yaml, "demo", "server", command, server)  # these have no --wait
        eventually(lambda wanted=status: show(clouds_yaml, server)["status"] == wanted, status)


def test_lock_and_unlock(clouds_yaml: Path, server: str) -> None:
    """The owner locks its own server (nova 2013.2's default): its changes are refused (409)
    until it unlocks. An administrator's lock is not the owner's to lift (403)."""
    openstack(clouds_yaml, "demo", "server", "lock", server)
    with pytest.raises(CommandFailed, match="409"):
        openstack(clouds_yaml, "demo", "server", "reboot", server)
    openstack(clouds_yaml, "demo", "server", "unlock", server)
    openstack(clouds_yaml, "admin_in_demo", "server", "lock", server)
    with pytest.raises(CommandFailed, match="403"):
        openstack(clouds_yaml, "demo", "server", "unlock", server)
    with pytest.raises(CommandFailed, match="409"):
        openstack(clouds_yaml, "demo", "server", "reboot", server)
    openstack(clouds_yaml, "admin_in_demo", "server", "unlock", server)
    openstack(clouds_yaml, "demo", "server", "reboot", "--wait", server)


def test_image_create_waits_through_the_image_service(clouds_yaml: Path, server: str) -> None:
    image = as_json(
        openstack(
            clouds_yaml,
            "demo",
            "server",
            "image",
            "create",
            "--name",
            "osc-snap",
            "--wait",
            "-f",
            "json",
            server,
        )
    )
    assert (image["name"], image["status"]) == ("osc-snap", "active")
    openstack(clouds_yaml, "demo", "image", "delete", image["id"])


def test_another_project_cannot_see_or_touch_it(clouds_yaml: Path, server: str) -> None:
    assert as_json(openstack(clouds_yaml, "alt_demo", "server", "list", "-f", "json")) == []
    for command in (("show", server), ("delete", server), ("reboot", server)):
        with pytest.raises(CommandFailed, match=r"No Server found|No server with a name or ID"):
            openstack(clouds_yaml, "alt_demo", "server", *command)
    assert show(clouds_yaml, server)["status"] == "ACTIVE"
