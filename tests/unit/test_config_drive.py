"""The config drive the agent builds (compute_agent/config_drive.py), read back with the
library that wrote it: nova's layout, for a server with files, a key and user data."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path

from compute_agent import config_drive
from shared.messages import FlavorSpec, GuestData, ImageSpec, InjectedFile, InstanceSpec
from tests.support.config_drive import read_drive

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGo7b5n2gC2q2cQp7x6kD3Xc0N6y7fYf0q6n3b6r9m4Z me@laptop"
SCRIPT = b"#!/bin/sh\necho user data ran\n"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def spec(**guest: object) -> InstanceSpec:
    return InstanceSpec(
        server_id=uuid.UUID("6b1d4d0c-5f0e-4c1e-9d4f-1f3b2a9c8e7d"),
        name="Web Server_1",
        flavor=FlavorSpec(id="1", name="m1.tiny", vcpus=1, ram_mb=64, disk_gb=1),
        image=ImageSpec(id=uuid.UUID("70a599e0-31e7-49b7-b260-868f441e862b"), name="guest"),
        metadata={"role": "web"},
        guest=GuestData.model_validate(guest),
    )


FULL = spec(
    project_id="demo",
    files=(
        InjectedFile(path="/etc/motd", contents=b64(b"hello\n")),
        # as XML bodies carry it: wrapped
        InjectedFile(path="/root/notes.txt", contents="bm90\nZXM=\n"),
    ),
    user_data=b64(SCRIPT),
    key_name="laptop",
    key_data=KEY,
    launch_index=2,
    reservation_id="r-abcd1234",
)


def test_the_drive_is_an_iso_labelled_config_2_with_nova_s_layout(tmp_path: Path) -> None:
    path = tmp_path / "disk.config"
    config_drive.write(path, FULL)
    drive = read_drive(path)
    assert drive.label == "config-2"
    assert sorted(drive.files) == [
        "ec2/latest/meta-data.json",
        "ec2/latest/user-data",
        "openstack/2013-04-04/meta_data.json",
        "openstack/2013-04-04/user_data",
        "openstack/content/0000",
        "openstack/content/0001",
        "openstack/latest/meta_data.json",
        "openstack/latest/user_data",
    ]
    assert not list(tmp_path.glob(".*")), "nothing written aside is left"


def test_meta_data_names_the_server_its_key_its_metadata_and_its_files() -> None:
    drive = read_drive(config_drive.image(config_drive.contents(FULL)))
    meta = drive.meta_data
    assert meta["uuid"] == str(FULL.server_id)
    assert (meta["name"], meta["hostname"]) == ("Web Server_1", "web-server-1")
    assert (meta["project_id"], meta["launch_index"]) == ("demo", 2)
    assert meta["availability_zone"] == "nova"
    assert meta["meta"] == {"role": "web"}
    assert meta["public_keys"] == {"laptop": KEY}
    assert meta["keys"] == [{"name": "laptop", "type": "ssh", "data": KEY}]
    assert meta["files"] == [
        {"path": "/etc/motd", "content_path": "/content/0000"},
        {"path": "/root/notes.txt", "content_path": "/content/0001"},
    ]
    assert len(base64.b64decode(meta["random_seed"])) == 512
    assert drive.delivered() == {"/etc/motd": b"hello\n", "/root/notes.txt": b"notes"}
    assert drive.files["openstack/latest/user_data"] == SCRIPT
    assert drive.json("openstack/2013-04-04/meta_data.json")["uuid"] == meta["uuid"]


def test_the_ec2_flavour_holds_the_same_server() -> None:
    drive = read_drive(config_drive.image(config_drive.contents(FULL)))
    ec2 = drive.json("ec2/latest/meta-data.json")
    assert ec2["instance-id"] == "i-6b1d4d0c"
    assert ec2["instance-type"] == "m1.tiny"
    assert ec2["reservation-id"] == "r-abcd1234"
    assert ec2["public-keys"] == {"0": {"openssh-key": KEY}}
    assert drive.files["ec2/latest/user-data"] == SCRIPT


def test_a_server_with_nothing_to_deliver_has_no_keys_files_or_user_data() -> None:
    bare = spec()
    drive = read_drive(config_drive.image(config_drive.contents(bare)))
    assert sorted(drive.files) == [
        "ec2/latest/meta-data.json",
        "openstack/2013-04-04/meta_data.json",
        "openstack/latest/meta_data.json",
    ]
    meta = drive.meta_data
    assert (meta["public_keys"], meta["keys"], meta["files"]) == ({}, [], [])
    assert json.loads(drive.files["ec2/latest/meta-data.json"])["public-keys"] == {}


def test_who_gets_a_drive() -> None:
    nothing = InstanceSpec.model_validate({**spec().model_dump(), "metadata": {}})
    assert not nothing.has_config_drive
    assert spec().has_config_drive  # metadata to deliver
    assert spec(config_drive=True).has_config_drive
    for guest in ({"user_data": b64(b"x")}, {"key_name": "k", "key_data": KEY}):
        assert InstanceSpec.model_validate(
            {**spec(**guest).model_dump(), "metadata": {}}
        ).has_config_drive


def test_hostnames_as_nova_sanitised_them() -> None:
    server_id = uuid.uuid4()
    assert config_drive.hostname("My_Server 01", server_id) == "my-server-01"
    assert config_drive.hostname("a.b!c", server_id) == "a.bc"
    assert config_drive.hostname("-x-", server_id) == "x"
    assert config_drive.hostname("§§§", server_id) == f"server-{server_id}"
    assert len(config_drive.hostname("x" * 100, server_id)) == 63


def test_writing_again_replaces_the_drive(tmp_path: Path) -> None:
    path = tmp_path / "disk.config"
    config_drive.write(path, FULL)
    config_drive.write(path, spec())
    assert read_drive(path).meta_data["files"] == []
