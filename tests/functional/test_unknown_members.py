"""Unknown members of request bodies are refused (nova v2.1's rule): 400 naming the member,
nothing created or started; the members of nova's extensions that today's clients send are
taken (docs/compatibility.md lists those Stratus does not act on)."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pytest

from stratus.system import System
from tests.conftest import IMAGE
from tests.support.client import ComputeClient
from tests.support.xml import COMPUTE, send


def _unexpected(member: str) -> str:
    return f"Additional properties are not allowed ('{member}' was unexpected)"


async def _server_count(system: System, tenant: str) -> int:
    n = await system.pool.fetchval("SELECT count(*) FROM servers WHERE tenant_id = $1", tenant)
    return int(n)


async def test_a_misspelt_member_of_create_is_refused_and_nothing_created(
    api: ComputeClient, system: System
) -> None:
    reply = await api.create_server("s", IMAGE, metdata={"k": "v"})
    assert reply.status == 400, reply
    assert _unexpected("metdata") in reply.body["badRequest"]["message"]
    assert await _server_count(system, api.tenant) == 0

    description = await api.create_server("s", IMAGE, description="later microversions only")
    assert description.status == 400, description
    assert _unexpected("description") in description.body["badRequest"]["message"]

    as_xml = await send(
        api,
        "POST",
        "/servers",
        f'<server xmlns="{COMPUTE[1:-1]}" name="x" imageRef="{IMAGE}" flavorRef="1" metdata="x"/>',
    )
    assert as_xml.status == 400, as_xml
    assert _unexpected("metdata") in as_xml.text
    assert await _server_count(system, api.tenant) == 0


async def test_a_create_body_as_novaclient_sends_it_is_taken(
    api: ComputeClient, client_for: Any
) -> None:
    user = client_for(api.tenant, f"u{uuid.uuid4().hex[:10]}")
    assert (await user.post("/os-keypairs", {"keypair": {"name": "k"}})).status == 200
    # nova boot --image IMAGE --flavor 1 --key-name k --user-data FILE
    #   --availability-zone nova --security-groups default --config-drive true
    #   --meta role=web --file /etc/motd=FILE --disk-config AUTO s
    body = {
        "server": {
            "name": "nova-boot",
            "imageRef": IMAGE,
            "flavorRef": "1",
            "min_count": 1,
            "max_count": 1,
            "key_name": "k",
            "user_data": base64.b64encode(b"#!/bin/sh\n").decode(),
            "availability_zone": "nova",
            "security_groups": [{"name": "default"}],
            "config_drive": True,
            "metadata": {"role": "web"},
            "personality": [{"path": "/etc/motd", "contents": base64.b64encode(b"hi").decode()}],
            "OS-DCF:diskConfig": "AUTO",
        }
    }
    reply = await user.post("/servers", body)
    assert reply.status == 202, reply
    server_id = reply.body["server"]["id"]
    shown = await user.get(f"/servers/{server_id}")
    assert shown.body["server"]["metadata"] == {"role": "web"}
    assert shown.body["server"]["key_name"] == "k"
    await user.delete_and_wait(server_id)


async def test_a_create_body_as_openstacksdk_sends_it_is_taken(api: ComputeClient) -> None:
    # conn.create_server(name, image=..., flavor=..., network=..., boot_from_volume=False,
    # ...): the members the SDK's Server resource puts in the body, and the scheduler hints
    # beside the server object
    body = {
        "server": {
            "name": "sdk",
            "imageRef": IMAGE,
            "flavorRef": "1",
            "networks": [{"uuid": str(uuid.uuid4())}],
            "security_groups": [{"name": "default"}],
            "adminPass": "s3cr3t-pass",
            "accessIPv4": "10.0.0.9",
            "max_count": 1,
            "min_count": 1,
            "return_reservation_id": False,
            "block_device_mapping_v2": [
                {
                    "boot_index": 0,
                    "uuid": IMAGE,
                    "source_type": "image",
                    "destination_type": "local",
                }
            ],
            "block_device_mapping": [],
        },
        "OS-SCH-HNT:scheduler_hints": {"group": str(uuid.uuid4())},
        "os:scheduler_hints": {},
    }
    reply = await api.post("/servers", body)
    assert reply.status == 202, reply
    assert reply.body["server"]["adminPass"] == "s3cr3t-pass"
    await api.delete_and_wait(reply.body["server"]["id"])


async def test_update_refuses_unknown_members(api: ComputeClient) -> None:
    server_id = (await api.create_server("u", IMAGE)).body["server"]["id"]
    path = f"/servers/{server_id}"
    reply = await api.request("PUT", path, {"server": {"name": "n", "metadata": {"k": "v"}}})
    assert reply.status == 400, reply
    assert _unexpected("metadata") in reply.body["badRequest"]["message"]
    assert (await api.get(path)).body["server"]["name"] == "u"
    taken = await api.request("PUT", path, {"server": {"name": "n", "OS-DCF:diskConfig": "AUTO"}})
    assert taken.status == 200, taken
    await api.delete_and_wait(server_id)


_ACTIONS: list[tuple[str, dict[str, Any]]] = [
    ("changePassword", {"adminPass": "new-pass-1"}),
    ("reboot", {"type": "HARD"}),
    ("rebuild", {"imageRef": IMAGE}),
    ("resize", {"flavorRef": "2"}),
    ("createImage", {"name": "snap"}),
]


@pytest.mark.parametrize(("action", "members"), _ACTIONS, ids=[a for a, _ in _ACTIONS])
async def test_an_action_with_an_unknown_member_is_refused(
    api: ComputeClient, system: System, action: str, members: dict[str, Any]
) -> None:
    server_id = (await api.create_server("a", IMAGE)).body["server"]["id"]
    await api.wait_for_status(server_id, "ACTIVE")
    path = f"/servers/{server_id}/action"
    reply = await api.post(path, {action: {**members, "metdata": {"k": "v"}}})
    assert reply.status == 400, reply
    assert _unexpected("metdata") in reply.body["badRequest"]["message"]
    # nothing was started
    assert (await api.get(f"/servers/{server_id}")).body["server"]["status"] == "ACTIVE"
    started = await system.pool.fetchval(
        "SELECT count(*) FROM actions WHERE server_id = $1 AND action <> 'create'",
        uuid.UUID(server_id),
    )
    assert started == 0
    await api.delete_and_wait(server_id)


_DCF = "http://docs.openstack.org/compute/ext/disk_config/api/v1.1"


async def test_xml_extension_attributes_are_taken_and_unknown_ones_refused(
    api: ComputeClient,
) -> None:
    # nova's samples: OS-DCF:diskConfig in its namespace, user_data, config_drive attributes
    body = (
        f'<server xmlns="{COMPUTE[1:-1]}" xmlns:OS-DCF="{_DCF}" name="x" imageRef="{IMAGE}"'
        ' flavorRef="1" OS-DCF:diskConfig="AUTO" config_drive="true"'
        ' user_data="IyEvYmluL3NoCg==" availability_zone="nova"/>'
    )
    reply = await send(api, "POST", "/servers", body)
    assert reply.status == 202, reply
    server_id = reply.xml.attrib["id"]
    await api.wait_for_status(server_id, "ACTIVE")
    action = f"/servers/{server_id}/action"
    refused = await send(api, "POST", action, f'<reboot xmlns="{COMPUTE[1:-1]}" typo="HARD"/>')
    assert refused.status == 400, refused
    assert _unexpected("typo") in refused.text
    resize = (
        f'<resize xmlns="{COMPUTE[1:-1]}" xmlns:OS-DCF="{_DCF}" flavorRef="1"'
        ' OS-DCF:diskConfig="MANUAL" colour="red"/>'
    )
    refused = await send(api, "POST", action, resize)
    assert refused.status == 400, refused
    assert _unexpected("colour") in refused.text
    await api.delete_and_wait(server_id)
