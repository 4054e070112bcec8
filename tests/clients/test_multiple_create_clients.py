"""Multiple create (os-multiple-create) as the clients ask for it: `openstack server create
--min/--max` and openstacksdk's ``min_count``/``max_count``, against `stratus up` (noauth)."""

from __future__ import annotations

from pathlib import Path

import openstack
import pytest
from openstack.connection import Connection

from shared.db import seed
from tests.clients import cli
from tests.clients.cli import as_json, eventually

IMAGE_NAME = seed.DEFAULT_IMAGES[0][0]


def _servers(noauth_clouds: Path) -> dict[str, str]:
    """{name: status} of the project's servers."""
    listed = as_json(cli.openstack(noauth_clouds, "alice", "server", "list", "-f", "json"))
    return {s["Name"]: s["Status"] for s in listed}


def _all_active(noauth_clouds: Path, names: list[str]) -> bool:
    servers = _servers(noauth_clouds)
    return sorted(servers) == names and set(servers.values()) == {"ACTIVE"}


def _delete_all(noauth_clouds: Path) -> None:
    listed = as_json(cli.openstack(noauth_clouds, "alice", "server", "list", "-f", "json"))
    if listed:
        cli.openstack(
            noauth_clouds, "alice", "server", "delete", "--wait", *(s["ID"] for s in listed)
        )
    assert _servers(noauth_clouds) == {}


def test_openstack_server_create_min_3_max_3(noauth_clouds: Path) -> None:
    cli.openstack(
        noauth_clouds,
        "alice",
        "server",
        "create",
        "--image",
        IMAGE_NAME,
        "--flavor",
        "m1.tiny",
        "--min",
        "3",
        "--max",
        "3",
        "-f",
        "json",
        "osc-many",
    )
    names = ["osc-many-1", "osc-many-2", "osc-many-3"]
    eventually(lambda: _all_active(noauth_clouds, names), "three ACTIVE servers")
    _delete_all(noauth_clouds)


def test_openstacksdk_min_and_max_count(
    noauth_clouds: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(noauth_clouds))
    conn: Connection = openstack.connect(cloud="alice")
    image = conn.image.find_image(IMAGE_NAME, ignore_missing=False)
    first = conn.compute.create_server(
        name="sdk-many", image_id=image.id, flavor_id="1", min_count=2, max_count=2
    )
    conn.compute.wait_for_server(first, wait=60, interval=0.5)
    eventually(lambda: _all_active(noauth_clouds, ["sdk-many-1", "sdk-many-2"]), "ACTIVE")
    assert conn.compute.get_server(first.id).name == "sdk-many-1"
    _delete_all(noauth_clouds)
