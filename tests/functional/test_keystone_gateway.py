"""The gateway with ``STRATUS_AUTH_STRATEGY=keystone``, over HTTP, beside the shared system
(same database, bus and hosts), with a Keystone stand-in: what clients see of the Keystone
side (the real Keystone and real clients are tests/clients')."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web

from api_gateway.app import create_app
from stratus.system import System
from tests import conftest
from tests.conftest import IMAGE
from tests.support.client import ComputeClient
from tests.support.fake_keystone import (
    SERVICE_PASSWORD,
    SERVICE_PROJECT,
    SERVICE_USER,
    FakeKeystone,
    fake_keystone,
)
from tests.support.processes import free_port


@dataclass
class KeystoneGateway:
    url: str
    keystone: FakeKeystone


@pytest.fixture(scope="module")
async def gateway(
    system: System, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[KeystoneGateway]:
    async with fake_keystone() as keystone:
        settings = conftest.test_settings(
            tmp_path_factory.mktemp("keystone-gateway"),
            auth_strategy="keystone",
            keystone_url=keystone.url,
            keystone_username=SERVICE_USER,
            keystone_password=SERVICE_PASSWORD,
            keystone_project=SERVICE_PROJECT,
        )
        runner = web.AppRunner(create_app(settings, pool=system.pool, bus=system.bus))
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            yield KeystoneGateway(f"http://127.0.0.1:{port}", keystone)
        finally:
            await runner.cleanup()


@pytest.fixture
def project() -> str:
    return uuid.uuid4().hex  # Keystone's project ids look like this


def as_user(
    http: aiohttp.ClientSession, gateway: KeystoneGateway, project: str, token: str
) -> ComputeClient:
    client = ComputeClient(http, gateway.url, project, "unused")
    client.token = token
    return client


async def test_the_version_documents_need_no_token(
    gateway: KeystoneGateway, http: aiohttp.ClientSession
) -> None:
    for path in ("/", "/v2", "/v2/", "/image/"):
        async with http.get(f"{gateway.url}{path}") as response:
            assert response.status == 200, path


async def test_no_token_is_401_with_the_challenge_and_a_request_id(
    gateway: KeystoneGateway, http: aiohttp.ClientSession, project: str
) -> None:
    for path in (f"/v2/{project}/servers", "/image/v2/images"):
        async with http.get(f"{gateway.url}{path}") as response:
            assert response.status == 401
            assert response.headers["WWW-Authenticate"] == (
                f'Keystone uri="{gateway.keystone.url}"'
            )
            request_id = response.headers["x-openstack-request-id"]
            assert request_id.startswith("req-")
            assert response.headers["X-Compute-Request-Id"] == request_id
            assert (await response.json())["unauthorized"]["code"] == 401


async def test_the_noauth_handshake_is_off(
    gateway: KeystoneGateway, http: aiohttp.ClientSession, project: str
) -> None:
    headers = {"X-Auth-User": "admin", "X-Auth-Project-Id": project}
    async with http.get(f"{gateway.url}/v2/{project}/servers", headers=headers) as response:
        assert response.status == 401
    member = as_user(http, gateway, project, f"admin:{project}")
    assert (await member.get("/servers")).status == 401


async def test_a_member_builds_and_deletes_a_server_in_its_project(
    gateway: KeystoneGateway, http: aiohttp.ClientSession, project: str
) -> None:
    token = gateway.keystone.token(project, "member", "reader", user_id="u-alice")
    member = as_user(http, gateway, project, token)
    reply = await member.create_server("through-keystone", IMAGE)
    assert reply.status == 202, reply
    server = await member.wait_for_status(reply.body["server"]["id"], "ACTIVE")
    assert (server["tenant_id"], server["user_id"]) == (project, "u-alice")
    assert "OS-EXT-SRV-ATTR:host" not in server
    glance = await member.get(f"{gateway.url}/image/v2/images/{IMAGE}")
    assert glance.status == 200
    await member.delete_and_wait(server["id"])


async def test_projects_are_kept_apart(
    gateway: KeystoneGateway, http: aiohttp.ClientSession, project: str
) -> None:
    other = uuid.uuid4().hex
    token = gateway.keystone.token(other, "member")
    stranger = as_user(http, gateway, project, token)
    reply = await stranger.get("/servers")
    assert (reply.status, next(iter(reply.body))) == (403, "forbidden")
    admin_token = gateway.keystone.token(other, "admin", "member", "reader", user_id="root")
    admin = as_user(http, gateway, project, admin_token)
    assert (await admin.get("/servers")).status == 200
    assert (await admin.get("/os-hosts")).status == 200


async def test_a_reader_reads_but_does_not_write(
    gateway: KeystoneGateway, http: aiohttp.ClientSession, project: str
) -> None:
    reader = as_user(http, gateway, project, gateway.keystone.token(project, "reader"))
    assert (await reader.get("/servers")).status == 200
    reply = await reader.create_server("not-allowed", IMAGE)
    assert (reply.status, next(iter(reply.body))) == (403, "forbidden")


async def test_a_keystone_outage_spares_known_tokens(
    gateway: KeystoneGateway, http: aiohttp.ClientSession, project: str
) -> None:
    known = as_user(http, gateway, project, gateway.keystone.token(project, "member"))
    assert (await known.get("/flavors")).status == 200
    gateway.keystone.down = True
    try:
        assert (await known.get("/flavors")).status == 200
        new = as_user(http, gateway, project, gateway.keystone.token(project, "member"))
        reply = await new.get("/flavors")
        assert (reply.status, reply.headers["Retry-After"]) == (503, "5")
    finally:
        gateway.keystone.down = False
