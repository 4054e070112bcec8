"""Personality files, a key pair and user data as people pass them at boot:
``openstack server create --key-name K --user-data F`` and openstacksdk's ``personality``
against `stratus up`, and ``nova boot --file … --key-name … --user-data …`` against the
Keystone cloud. Each server gets a config drive holding them (read back from the host's
instance directory), and its console log shows what the guest did with them (on these test
hypervisors, what the fake guest prints: compute_agent/virt/fake_guest.py; the realvm suite
shows the real guest).

``openstack server create --file`` is not among them: python-openstackclient (10.5) hands
openstacksdk the open files themselves, and fails before sending anything ("Object of type
BufferedReader is not JSON serializable"); docs/clients.md says so."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import openstack as openstack_sdk
import pytest
from openstack.connection import Connection

from shared.db import seed
from tests.clients.cli import as_json, eventually, openstack, table
from tests.clients.conftest import KeystoneCloud
from tests.support.config_drive import read_drive

IMAGE_NAME = seed.DEFAULT_IMAGES[0][0]
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE7Cw5t6f0w7v3m1aQxZrj2c4Dq9nVh0pYb8s1kTq2Lw me@desk"
SCRIPT = b"#!/bin/sh\necho configured by user data\n"
SAY = "stratus-guest: config-drive:"


def _inputs(directory: Path) -> tuple[Path, Path, Path]:
    """A file to deliver, a public key and a user-data script, as a user has them."""
    motd, key, user_data = directory / "motd", directory / "desk.pub", directory / "ud.sh"
    motd.write_text("welcome to a Stratus server\n")
    key.write_text(KEY + "\n")
    user_data.write_bytes(SCRIPT)
    return motd, key, user_data


def _drive(data_dir: Path, server_id: str) -> dict[str, bytes]:
    """The files the server's drive delivers, read back from its host's instance directory."""
    found = list(data_dir.rglob(f"{server_id}/disk.config"))
    assert len(found) == 1, found
    drive = read_drive(found[0])
    assert drive.label == "config-2"
    assert drive.files["openstack/latest/user_data"] == SCRIPT
    assert [key.strip() for key in drive.meta_data["public_keys"].values()] == [KEY]
    return drive.delivered()


def _delivered_on_the_console(log: str) -> None:
    assert f"{SAY} found /dev/sr0" in log, log
    assert f"{SAY} file /etc/motd 440 root:root" in log, log
    assert f"{SAY} authorized_keys {KEY}" in log, log
    assert f"{SAY} done" in log, log


def test_openstack_server_create_with_a_key_and_user_data_and_sdk_personality(
    stratus_up: str,
    stratus_up_data: Path,
    noauth_clouds: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    motd, key, user_data = _inputs(tmp_path)
    name = f"k-{uuid.uuid4().hex[:6]}"
    openstack(noauth_clouds, "alice", "keypair", "create", "--public-key", str(key), name)
    created = as_json(
        openstack(
            noauth_clouds, "alice", "server", "create", "--image", IMAGE_NAME,
            "--flavor", "m1.tiny", "--key-name", name, "--user-data", str(user_data),
            "--config-drive", "True", "--wait", "-f", "json", f"cli-{uuid.uuid4().hex[:6]}",
        )
    )  # fmt: skip
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(noauth_clouds))
    conn: Connection = openstack_sdk.connect(cloud="alice")
    contents = base64.b64encode(motd.read_bytes()).decode()
    with_file = conn.compute.create_server(
        name=f"sdk-{uuid.uuid4().hex[:6]}",
        image_id=str(seed.image_id(IMAGE_NAME)),
        flavor_id="1",
        key_name=name,
        user_data=base64.b64encode(SCRIPT).decode(),
        personality=[{"path": "/etc/motd", "contents": contents}],
    )
    try:
        shown = as_json(
            openstack(noauth_clouds, "alice", "server", "show", "-f", "json", created["id"])
        )
        assert (shown["key_name"], shown["config_drive"]) == (name, "True")
        assert _drive(stratus_up_data, created["id"]) == {}
        log = openstack(noauth_clouds, "alice", "console", "log", "show", created["id"])
        assert f"{SAY} authorized_keys {KEY}" in log, log

        conn.compute.wait_for_server(with_file, wait=60)
        assert _drive(stratus_up_data, with_file.id) == {"/etc/motd": motd.read_bytes()}
        _delivered_on_the_console(conn.compute.get_server_console_output(with_file)["output"])
    finally:
        openstack(noauth_clouds, "alice", "server", "delete", "--wait", created["id"])
        conn.compute.delete_server(with_file)
        conn.compute.wait_for_delete(with_file, wait=60)
        openstack(noauth_clouds, "alice", "keypair", "delete", name)


@pytest.mark.integration
def test_nova_boot_with_a_file_a_key_and_user_data(
    keystone_cloud: KeystoneCloud, tmp_path: Path
) -> None:
    motd, key, user_data = _inputs(tmp_path)
    name = f"k-{uuid.uuid4().hex[:6]}"
    keystone_cloud.nova("demo", "keypair-add", "--pub-key", str(key), name)
    shown = table(
        keystone_cloud.nova(
            "demo", "boot", "--image", IMAGE_NAME, "--flavor", "m1.tiny",
            "--file", f"/etc/motd={motd}", "--key-name", name, "--user-data", str(user_data),
            "--poll", f"delivered-{uuid.uuid4().hex[:6]}",
        )
    )  # fmt: skip
    server_id = shown["id"]
    try:
        assert table(keystone_cloud.nova("demo", "show", server_id))["key_name"] == name
        data_dir = keystone_cloud.processes.log_dir / "data"
        assert _drive(data_dir, server_id) == {"/etc/motd": motd.read_bytes()}
        _delivered_on_the_console(keystone_cloud.nova("demo", "console-log", server_id))
    finally:
        keystone_cloud.nova("demo", "delete", server_id)
        keystone_cloud.nova("demo", "keypair-delete", name)

    def gone() -> bool:
        return server_id not in keystone_cloud.nova("demo", "list")

    eventually(gone, "the server is deleted")
