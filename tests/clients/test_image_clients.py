"""Images users bring, as the clients bring them (issue 14): `openstack image create --file`,
`image save`, `image set`, `image delete`, openstacksdk's ``create_image``/``download_image``,
and a server booted from the upload, against `stratus up` (noauth)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import openstack
import pytest
from openstack.connection import Connection

from tests.clients import cli
from tests.clients.cli import as_json


@pytest.fixture
def disk(tmp_path: Path) -> Path:
    path = tmp_path / "disk.qcow2"
    path.write_bytes(b"QFI\xfb" + os.urandom(2_000_000))
    return path


def test_the_cli_uploads_saves_sets_boots_and_deletes(
    noauth_clouds: Path, disk: Path, tmp_path: Path
) -> None:
    created = as_json(
        cli.openstack(
            noauth_clouds,
            "alice",
            "image",
            "create",
            "--disk-format",
            "qcow2",
            "--container-format",
            "bare",
            "--file",
            str(disk),
            "--property",
            "os_distro=cirros",
            "-f",
            "json",
            "osc-upload",
        )
    )
    image_id = created["id"]
    shown = as_json(cli.openstack(noauth_clouds, "alice", "image", "show", "-f", "json", image_id))
    assert (shown["status"], shown["size"]) == ("active", disk.stat().st_size)
    assert shown["checksum"] == hashlib.md5(disk.read_bytes()).hexdigest()

    saved = tmp_path / "saved.qcow2"
    cli.openstack(noauth_clouds, "alice", "image", "save", "--file", str(saved), image_id)
    assert saved.read_bytes() == disk.read_bytes()

    cli.openstack(
        noauth_clouds, "alice", "image", "set", "--name", "osc-renamed", "--min-ram", "64", image_id
    )
    shown = as_json(cli.openstack(noauth_clouds, "alice", "image", "show", "-f", "json", image_id))
    assert (shown["name"], shown["min_ram"]) == ("osc-renamed", 64)

    server = as_json(
        cli.openstack(
            noauth_clouds,
            "alice",
            "server",
            "create",
            "--image",
            "osc-renamed",
            "--flavor",
            "m1.tiny",
            "--wait",
            "-f",
            "json",
            "from-upload",
        )
    )
    assert server["status"] == "ACTIVE"
    cli.openstack(noauth_clouds, "alice", "server", "delete", "--wait", server["id"])
    cli.openstack(noauth_clouds, "alice", "image", "delete", image_id)
    listed = as_json(cli.openstack(noauth_clouds, "alice", "image", "list", "-f", "json"))
    assert image_id not in {i["ID"] for i in listed}


def test_openstacksdk_uploads_and_downloads(
    noauth_clouds: Path, disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(noauth_clouds))
    conn: Connection = openstack.connect(cloud="alice")
    image = conn.image.create_image(
        name="sdk-upload",
        filename=str(disk),
        disk_format="qcow2",
        container_format="bare",
        validate_checksum=True,
    )
    image = conn.image.get_image(image.id)
    assert (image.status, image.size) == ("active", disk.stat().st_size)
    downloaded = conn.image.download_image(image)
    assert downloaded.content == disk.read_bytes()
    conn.image.delete_image(image)
