"""``key_name`` on server create (nova's os-keypairs): one of the caller's key pairs, stored
with the server and shown in show and detail (null when none); an unknown name, or another
user's, is 400 "Invalid key_name provided." and creates nothing."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from stratus.system import System
from tests.conftest import IMAGE
from tests.support.client import ComputeClient
from tests.support.xml import COMPUTE, send

KEYS = "/os-keypairs"
INVALID = "Invalid key_name provided."


@pytest.fixture
def user_api(client_for: Callable[[str, str], ComputeClient], tenant: str) -> ComputeClient:
    """A user of its own (key pairs are the user's)."""
    return client_for(tenant, f"u{uuid.uuid4().hex[:10]}")


async def _server_count(system: System, tenant: str) -> int:
    n = await system.pool.fetchval("SELECT count(*) FROM servers WHERE tenant_id = $1", tenant)
    return int(n)


async def test_a_server_created_with_a_key_shows_it(
    user_api: ComputeClient, system: System
) -> None:
    key = (await user_api.post(KEYS, {"keypair": {"name": "my key"}})).body["keypair"]
    reply = await user_api.create_server("keyed", IMAGE, key_name="my key")
    assert reply.status == 202, reply
    server_id = reply.body["server"]["id"]
    # nova's create answer carries no key_name (samples/nova-2013.1 server-post-resp)
    assert "key_name" not in reply.body["server"]
    await user_api.wait_for_status(server_id, "ACTIVE")

    # show and detail pass tempest's get_server and list_servers_detail (the client checks)
    shown = await user_api.get(f"/servers/{server_id}")
    assert shown.status == 200
    assert shown.body["server"]["key_name"] == "my key"
    detail = await user_api.get("/servers/detail")
    assert detail.status == 200
    assert [s["key_name"] for s in detail.body["servers"]] == ["my key"]

    # the key's public half and fingerprint are kept with the server, for the guest
    row = await system.pool.fetchrow(
        "SELECT key_name, key_data, key_fingerprint FROM servers WHERE id = $1",
        uuid.UUID(server_id),
    )
    assert row is not None and tuple(row) == ("my key", key["public_key"], key["fingerprint"])

    # update answers keep tempest's update schema (no key_name there)
    updated = await user_api.request("PUT", f"/servers/{server_id}", {"server": {"name": "n"}})
    assert updated.status == 200
    assert "key_name" not in updated.body["server"]

    # deleting the key pair leaves the server's record of it
    assert (await user_api.delete(f"{KEYS}/my%20key")).status == 202
    shown = await user_api.get(f"/servers/{server_id}")
    assert shown.body["server"]["key_name"] == "my key"
    await user_api.delete_and_wait(server_id)


async def test_a_server_without_a_key_shows_null(api: ComputeClient) -> None:
    reply = await api.create_server("keyless", IMAGE)
    assert reply.status == 202, reply
    server_id = reply.body["server"]["id"]
    shown = await api.get(f"/servers/{server_id}")
    assert shown.status == 200  # and tempest's get_server, which allows null (the client checks)
    assert shown.body["server"]["key_name"] is None
    await api.delete_and_wait(server_id)


@pytest.mark.parametrize("key_name", ["nope", "", 7, ["k"], {"k": 1}, True, "x" * 256])
async def test_an_unknown_key_name_is_refused_and_nothing_is_created(
    user_api: ComputeClient, system: System, key_name: object
) -> None:
    await user_api.post(KEYS, {"keypair": {"name": "k"}})
    reply = await user_api.create_server("s", IMAGE, key_name=key_name)
    assert reply.status == 400, reply
    assert reply.body["badRequest"]["message"] == INVALID
    assert await _server_count(system, user_api.tenant) == 0


async def test_another_user_s_key_name_is_refused(
    client_for: Callable[[str, str], ComputeClient], tenant: str, system: System
) -> None:
    owner = client_for(tenant, f"u{uuid.uuid4().hex[:10]}")
    other = client_for(tenant, f"u{uuid.uuid4().hex[:10]}")
    assert (await owner.post(KEYS, {"keypair": {"name": "theirs"}})).status == 200
    reply = await other.create_server("s", IMAGE, key_name="theirs")
    assert reply.status == 400, reply
    assert reply.body["badRequest"]["message"] == INVALID
    assert await _server_count(system, tenant) == 0


async def test_key_name_in_xml(user_api: ComputeClient, system: System) -> None:
    assert (await user_api.post(KEYS, {"keypair": {"name": "xk"}})).status == 200
    body = (
        f'<server xmlns="{COMPUTE[1:-1]}" name="x" imageRef="{IMAGE}" flavorRef="1" key_name="xk"/>'
    )
    reply = await send(user_api, "POST", "/servers", body)
    assert reply.status == 202, reply
    server_id = reply.xml.attrib["id"]
    shown = await user_api.get(f"/servers/{server_id}")
    assert shown.body["server"]["key_name"] == "xk"
    shown_xml = await send(user_api, "GET", f"/servers/{server_id}")
    assert shown_xml.xml.attrib["key_name"] == "xk"

    unknown = body.replace('key_name="xk"', 'key_name="nope"')
    reply = await send(user_api, "POST", "/servers", unknown)
    assert reply.status == 400, reply
    assert INVALID in reply.text
    await user_api.delete_and_wait(server_id)
