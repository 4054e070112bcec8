"""openstacksdk and the ``openstack`` command against `stratus up` without Keystone (noauth),
configured by the ``clouds.yaml`` that README.md and docs/clients.md show."""

from __future__ import annotations

import uuid
from pathlib import Path

import openstack
import pytest
import yaml
from openstack.connection import Connection

from shared.db import seed
from tests.clients import cli
from tests.clients.cli import as_json, eventually
from tests.clients.conftest import noauth_cloud

IMAGE_NAME = seed.DEFAULT_IMAGES[0][0]


@pytest.fixture
def project() -> str:
    return f"sdk{uuid.uuid4().hex[:8]}"


@pytest.fixture
def clouds_yaml(stratus_up: str, project: str, tmp_path: Path) -> Path:
    path = tmp_path / "clouds.yaml"
    path.write_text(
        yaml.safe_dump({"clouds": {"stratus": noauth_cloud(stratus_up, project, "alice")}})
    )
    return path


def openstack_cli(clouds_yaml: Path, *args: str) -> str:
    """``openstack args`` as the ``stratus`` cloud of ``clouds_yaml``."""
    return cli.openstack(clouds_yaml, "stratus", *args)


def test_the_cli_builds_lists_acts_on_and_deletes_a_server(clouds_yaml: Path) -> None:
    created = as_json(
        openstack_cli(
            clouds_yaml,
            "server",
            "create",
            "--image",
            IMAGE_NAME,
            "--flavor",
            "m1.tiny",
            "--wait",
            "-f",
            "json",
            "noauth-cli",
        )
    )
    server = created["id"]
    assert created["status"] == "ACTIVE"
    listed = as_json(openstack_cli(clouds_yaml, "server", "list", "-f", "json"))
    assert [s["ID"] for s in listed] == [server]
    openstack_cli(clouds_yaml, "server", "reboot", "--hard", "--wait", server)
    openstack_cli(clouds_yaml, "server", "stop", server)

    def stopped() -> bool:
        shown = as_json(openstack_cli(clouds_yaml, "server", "show", "-f", "json", server))
        return bool(shown["status"] == "SHUTOFF")

    eventually(stopped, "SHUTOFF")
    flavors = as_json(openstack_cli(clouds_yaml, "flavor", "list", "-f", "json"))
    assert "m1.tiny" in {f["Name"] for f in flavors}
    images = as_json(openstack_cli(clouds_yaml, "image", "list", "-f", "json"))
    assert IMAGE_NAME in {i["Name"] for i in images}
    openstack_cli(clouds_yaml, "server", "delete", "--wait", server)


def test_openstacksdk_from_the_same_clouds_yaml(
    clouds_yaml: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds_yaml))
    conn: Connection = openstack.connect(cloud="stratus")
    image = conn.image.find_image(IMAGE_NAME, ignore_missing=False)
    server = conn.compute.create_server(name="noauth-sdk", image_id=image.id, flavor_id="1")
    server = conn.compute.wait_for_server(server, wait=60, interval=0.5)
    assert [s.id for s in conn.compute.servers()] == [server.id]
    conn.compute.set_server_metadata(server, k="v")
    assert conn.compute.fetch_server_metadata(server).metadata == {"k": "v"}
    conn.compute.delete_server(server)
    conn.compute.wait_for_delete(server, wait=60, interval=0.5)
