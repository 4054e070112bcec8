"""Personality files, the key pair and user data reach the server's config drive
(compute_agent/config_drive.py): the agent builds it in the server's instance directory, on
the libvirt test hypervisor as on the fake one (the same code), and the tests read it back.
os-user-data's ``user_data`` (base64, at most 64 KiB) and os-config-drive's ``config_drive``
on create, JSON and XML; a rebuild's personality makes a new drive."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import pytest

from stratus.system import System
from tests.conftest import IMAGE
from tests.support.actions import act
from tests.support.client import ComputeClient
from tests.support.config_drive import Drive, read_drive
from tests.support.xml import send

SCRIPT = b"#!/bin/sh\necho hello from user data\n"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def drive_path(system: System, server_id: str) -> Path | None:
    """The server's drive in its instance directory on the functional host, if any."""
    found = list(system.settings.data_dir.rglob(f"{server_id}/disk.config"))
    assert len(found) <= 1, found
    return found[0] if found else None


def drive_of(system: System, server_id: str) -> Drive:
    path = drive_path(system, server_id)
    assert path is not None, f"server {server_id} has no config drive"
    return read_drive(path)


async def test_files_a_key_and_user_data_are_on_the_drive(
    api: ComputeClient, system: System
) -> None:
    key = (await api.post("/os-keypairs", {"keypair": {"name": "laptop"}})).body["keypair"]
    reply = await api.create_server(
        "delivered",
        IMAGE,
        metadata={"role": "web"},
        personality=[
            {"path": "/etc/motd", "contents": b64(b"welcome\n")},
            {"path": "/root/.profile", "contents": b64(b"export A=1\n")},
        ],
        key_name="laptop",
        user_data=b64(SCRIPT),
        config_drive=True,
    )
    assert reply.status == 202, reply
    server_id = reply.body["server"]["id"]
    server = await api.wait_for_status(server_id, "ACTIVE")
    assert server["config_drive"] == "True"

    drive = drive_of(system, server_id)
    assert drive.label == "config-2"
    meta = drive.meta_data
    assert (meta["uuid"], meta["name"], meta["hostname"]) == (server_id, "delivered", "delivered")
    assert meta["project_id"] == api.tenant
    assert meta["meta"] == {"role": "web"}
    assert meta["public_keys"] == {"laptop": key["public_key"]}
    assert drive.delivered() == {"/etc/motd": b"welcome\n", "/root/.profile": b"export A=1\n"}
    assert drive.files["openstack/latest/user_data"] == SCRIPT

    await api.delete_and_wait(server_id)
    assert drive_path(system, server_id) is None, "the drive goes with the server"


async def test_xml_create_delivers_the_same(api: ComputeClient, system: System) -> None:
    body = f"""<?xml version="1.0" encoding="UTF-8"?>
<server xmlns="http://docs.openstack.org/compute/api/v1.1" imageRef="{IMAGE}" flavorRef="1"
        name="xml-delivered" config_drive="true">
  <user_data>
    {b64(SCRIPT)}
  </user_data>
  <personality>
    <file path="/etc/banner.txt">
        {b64(b"a cloud does not know why it moves")}
    </file>
  </personality>
</server>"""
    reply = await send(api, "POST", "/servers", body)
    assert reply.status == 202, reply.text
    server_id = reply.xml.attrib["id"]
    await api.wait_for_status(server_id, "ACTIVE")
    shown = await send(api, "GET", f"/servers/{server_id}")
    assert shown.xml.attrib["config_drive"] == "True"
    drive = drive_of(system, server_id)
    assert drive.delivered() == {"/etc/banner.txt": b"a cloud does not know why it moves"}
    assert drive.files["openstack/latest/user_data"] == SCRIPT
    await api.delete_and_wait(server_id)


async def test_a_server_with_nothing_to_deliver_gets_no_drive(
    api: ComputeClient, system: System
) -> None:
    reply = await api.create_server("bare", IMAGE)
    server_id = reply.body["server"]["id"]
    server = await api.wait_for_status(server_id, "ACTIVE")
    assert server["config_drive"] == ""
    assert drive_path(system, server_id) is None
    await api.delete_and_wait(server_id)


async def test_asking_for_a_drive_gets_one_even_with_nothing_to_deliver(
    api: ComputeClient, system: System
) -> None:
    reply = await api.create_server("asked", IMAGE, config_drive="True")
    server_id = reply.body["server"]["id"]
    await api.wait_for_status(server_id, "ACTIVE")
    assert drive_of(system, server_id).meta_data["files"] == []
    await api.delete_and_wait(server_id)


@pytest.mark.parametrize(
    ("member", "message"),
    [
        ({"user_data": "not base64!"}, "Userdata content cannot be decoded"),
        ({"user_data": "A" * 65536}, "User data too large"),
        ({"user_data": 7}, "user_data"),
        ({"config_drive": "maybe"}, "config_drive"),
    ],
)
async def test_bad_user_data_or_config_drive_is_400_and_creates_nothing(
    api: ComputeClient, system: System, member: dict[str, object], message: str
) -> None:
    reply = await api.create_server("refused", IMAGE, **member)
    assert reply.status == 400, reply
    assert message in reply.body["badRequest"]["message"]
    count = await system.pool.fetchval(
        "SELECT count(*) FROM servers WHERE tenant_id = $1", api.tenant
    )
    assert count == 0


async def test_user_data_of_64_kib_is_taken(api: ComputeClient, system: System) -> None:
    data = b"#" * (65535 // 4 * 3)  # 65532 characters of base64
    reply = await api.create_server("big", IMAGE, user_data=b64(data))
    assert reply.status == 202, reply
    server_id = reply.body["server"]["id"]
    await api.wait_for_status(server_id, "ACTIVE")
    assert drive_of(system, server_id).files["openstack/latest/user_data"] == data
    await api.delete_and_wait(server_id)


async def test_a_rebuild_makes_a_new_drive_with_its_own_files(
    api: ComputeClient, system: System
) -> None:
    reply = await api.create_server(
        "rebuilt", IMAGE, personality=[{"path": "/etc/old", "contents": b64(b"old")}]
    )
    server_id = reply.body["server"]["id"]
    await api.wait_for_status(server_id, "ACTIVE")
    assert drive_of(system, server_id).delivered() == {"/etc/old": b"old"}

    rebuild = {"imageRef": IMAGE, "personality": [{"path": "/etc/new", "contents": b64(b"new")}]}
    assert (await act(api, server_id, {"rebuild": rebuild})).status == 202
    await api.wait_for_status(server_id, "ACTIVE")
    assert drive_of(system, server_id).delivered() == {"/etc/new": b"new"}
    row = await system.pool.fetchval(
        "SELECT injected_files FROM servers WHERE id = $1", uuid.UUID(server_id)
    )
    assert row == [{"path": "/etc/new", "contents": b64(b"new")}]

    assert (await act(api, server_id, {"rebuild": {"imageRef": IMAGE}})).status == 202
    await api.wait_for_status(server_id, "ACTIVE")
    # nova: the rebuild's files only; with nothing left to deliver, no drive at all
    assert drive_path(system, server_id) is None
    await api.delete_and_wait(server_id)


async def test_the_extensions_are_listed(api: ComputeClient) -> None:
    aliases = {e["alias"] for e in (await api.get("/extensions")).body["extensions"]}
    assert {"os-config-drive", "os-user-data"} <= aliases
    shown = await send(api, "GET", "/extensions/os-user-data")
    assert shown.status == 200, shown.text
    common = "{http://docs.openstack.org/common/api/v1.0}"
    assert (shown.xml.tag, shown.xml.attrib["name"]) == (f"{common}extension", "UserData")
