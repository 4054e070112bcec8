"""Multiple create (os-multiple-create) as the clients ask for it: `openstack server create
--min/--max` and openstacksdk's ``min_count``/``max_count``, against `stratus up` (noauth)."""

from __future__ import annotations

import uuid
from pathlib import Path

import openstack
import pytest
import yaml
from openstack.connection import Connection

from shared.db import seed
from tests.clients.cli import as_json, eventually
from tests.clients.test_noauth_sdk_and_cli import noauth_cloud, openstack_cli

IMAGE_NAME = seed.DEFAULT_IMAGES[0][0]


@pytest.fixture
def clouds_yaml(stratus_up: str, tmp_path: Path) -> Path:
    project = f"mc{uuid.uuid4().hex[:8]}"
    path = tmp_path / "clouds.yaml"
    path.write_text(
        yaml.safe_dump({"clouds": {"stratus": noauth_cloud(stratus_up, project, "alice")}})
    )
    return path


def _servers(clouds_yaml: Path) -> dict[str, str]:
    """{name: status} of the project's servers."""
    listed = as_json(openstack_cli(clouds_yaml, "server", "list", "-f", "json"))
    return {s["Name"]: s["Status"] for s in listed}


def _all_active(clouds_yaml: Path, names: list[str]) -> bool:
    servers = _servers(clouds_yaml)
    return sorted(servers) == names and set(servers.values()) == {"ACTIVE"}


def _delete_all(clouds_yaml: Path) -> None:
    listed = as_json(openstack_cli(clouds_yaml, "server", "list", "-f", "json"))
    if listed:
        openstack_cli(clouds_yaml, "server", "delete", "--wait", *(s["ID"] for s in listed))
    assert _servers(clouds_yaml) == {}


def test_openstack_server_create_min_3_max_3(clouds_yaml: Path) -> None:
    openstack_cli(
        clouds_yaml,
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
    eventually(lambda: _all_active(clouds_yaml, names), "three ACTIVE servers")
    _delete_all(clouds_yaml)


def test_openstacksdk_min_and_max_count(clouds_yaml: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds_yaml))
    conn: Connection = openstack.connect(cloud="stratus")
    image = conn.image.find_image(IMAGE_NAME, ignore_missing=False)
    first = conn.compute.create_server(
        name="sdk-many", image_id=image.id, flavor_id="1", min_count=2, max_count=2
    )
    conn.compute.wait_for_server(first, wait=60, interval=0.5)
    eventually(lambda: _all_active(clouds_yaml, ["sdk-many-1", "sdk-many-2"]), "ACTIVE")
    assert conn.compute.get_server(first.id).name == "sdk-many-1"
    _delete_all(clouds_yaml)
