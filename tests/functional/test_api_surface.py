"""Versions, flavors, images, faults and authentication as a client sees them."""

from __future__ import annotations

import re
from collections.abc import Callable

import aiohttp
import pytest

from stratus.system import System
from tests.conftest import IMAGE
from tests.support.client import ComputeClient

REQUEST_ID = re.compile(r"^req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


async def test_version_list_needs_no_token_and_has_the_form_clients_accept(
    system: System, api: ComputeClient
) -> None:
    reply = await api.request("GET", f"{system.url}/", authenticated=False)
    assert reply.status == 200
    assert REQUEST_ID.match(reply.headers["x-openstack-request-id"])
    (version,) = reply.body["versions"]
    assert version["id"] == "v2.0"
    assert version["status"] == "CURRENT"
    assert version["version"] == version["min_version"] == ""
    assert version["links"] == [{"rel": "self", "href": f"{system.url}/v2/"}]
    assert set(version) == {"id", "status", "version", "min_version", "updated", "links"}


async def test_version_details_list_media_types(system: System, api: ComputeClient) -> None:
    for path in ("/v2/", "/v2"):
        reply = await api.request("GET", f"{system.url}{path}", authenticated=False)
        assert reply.status == 200
        version = reply.body["version"]
        assert version["id"] == "v2.0"
        assert {m["base"] for m in version["media-types"]} == {
            "application/json",
            "application/xml",
        }
        # no other members: tempest's get_one_version schema (tests/support/schemas.py)


async def test_flavors_are_the_classic_five(api: ComputeClient) -> None:
    detail = await api.get("/flavors/detail")
    assert detail.status == 200
    by_id = {f["id"]: f for f in detail.body["flavors"]}
    assert {k: (v["name"], v["ram"], v["disk"], v["vcpus"]) for k, v in by_id.items()} == {
        "1": ("m1.tiny", 512, 1, 1),
        "2": ("m1.small", 2048, 20, 1),
        "3": ("m1.medium", 4096, 40, 2),
        "4": ("m1.large", 8192, 80, 4),
        "5": ("m1.xlarge", 16384, 160, 8),
    }
    one = await api.get("/flavors/3")
    assert one.body["flavor"]["name"] == "m1.medium"
    assert one.body["flavor"]["links"][0]["href"].endswith(f"/v2/{api.tenant}/flavors/3")
    assert one.body["flavor"]["links"][1]["href"].endswith(f"/{api.tenant}/flavors/3")
    index = await api.get("/flavors")
    assert all(set(f) == {"id", "name", "links"} for f in index.body["flavors"])


async def test_flavor_filters_and_pagination(api: ComputeClient) -> None:
    big = await api.get("/flavors/detail?minRam=8192&minDisk=100")
    assert [f["id"] for f in big.body["flavors"]] == ["5"]
    first = await api.get("/flavors?limit=2")
    assert [f["id"] for f in first.body["flavors"]] == ["1", "2"]
    (next_link,) = first.body["flavors_links"]
    assert next_link["rel"] == "next"
    second = await api.get(next_link["href"])
    assert [f["id"] for f in second.body["flavors"]] == ["3", "4"]
    assert (await api.get("/flavors?minRam=lots")).status == 400
    assert (await api.get("/flavors?marker=nope")).status == 400
    assert (await api.get("/flavors?limit=-1")).status == 400


async def test_unknown_flavor_is_item_not_found(api: ComputeClient) -> None:
    reply = await api.get("/flavors/999")
    assert reply.status == 404
    assert reply.body == {
        "itemNotFound": {"code": 404, "message": "The resource could not be found."}
    }


async def test_seeded_images_are_listed_and_shown(api: ComputeClient) -> None:
    detail = await api.get("/images/detail")
    names = {i["name"]: i for i in detail.body["images"]}
    assert "cirros-0.6.2-x86_64" in names
    cirros = names["cirros-0.6.2-x86_64"]
    assert cirros["id"] == IMAGE
    assert (cirros["status"], cirros["progress"]) == ("ACTIVE", 100)
    assert cirros["created"].endswith("Z")
    shown = await api.get(f"/images/{IMAGE}")
    assert shown.body["image"] == cirros
    assert (await api.get("/images/not-a-uuid")).status == 404


async def test_bad_create_requests_get_faults_not_500(api: ComputeClient) -> None:
    cases = [
        ({"server": {"name": "x", "imageRef": IMAGE, "flavorRef": "999"}}, 400),
        ({"server": {"name": "x", "imageRef": "not-a-uuid", "flavorRef": "1"}}, 400),
        (
            {
                "server": {
                    "name": "x",
                    "flavorRef": "1",
                    "imageRef": "11111111-2222-3333-4444-555555555555",
                }
            },
            400,
        ),
        ({"server": {"name": "", "imageRef": IMAGE, "flavorRef": "1"}}, 400),
        ({"server": {"name": "x" * 256, "imageRef": IMAGE, "flavorRef": "1"}}, 400),
        # measured as sent: 255 characters and a newline is too long (hypothesis found it)
        ({"server": {"name": "x" * 255 + "\r", "imageRef": IMAGE, "flavorRef": "1"}}, 400),
        ({"server": {"imageRef": IMAGE, "flavorRef": "1"}}, 400),
        ({"server": {"name": "x", "imageRef": IMAGE, "flavorRef": "1", "metadata": {"k": 1}}}, 400),
        (
            {
                "server": {
                    "name": "x",
                    "imageRef": IMAGE,
                    "flavorRef": "1",
                    "accessIPv4": "300.1.1.1",
                }
            },
            400,
        ),
        ({"server": "nope"}, 400),
        ([], 400),
        ({}, 400),
    ]
    for body, status in cases:
        reply = await api.post("/servers", body)
        assert reply.status == status, (body, reply.body)
        (fault,) = reply.body.values()
        assert fault["code"] == status and fault["message"]
    assert (await api.get("/servers")).body["servers"] == []


async def test_image_and_flavor_may_be_given_as_urls(api: ComputeClient) -> None:
    reply = await api.create_server(
        "by-url",
        f"{api.url}/v2/{api.tenant}/images/{IMAGE}",
        f"{api.url}/v2/{api.tenant}/flavors/1",
    )
    assert reply.status == 202
    server = await api.wait_for_status(reply.body["server"]["id"], "ACTIVE")
    assert (server["image"]["id"], server["flavor"]["id"]) == (IMAGE, "1")
    await api.delete_and_wait(server["id"])


async def test_malformed_and_unsupported_bodies(api: ComputeClient) -> None:
    async with api.session.post(
        f"{api.url}/v2/{api.tenant}/servers",
        data=b"{not json",
        headers={"X-Auth-Token": api.token, "Content-Type": "application/json"},
    ) as response:
        assert response.status == 400
        assert "badRequest" in await response.json()
    async with api.session.post(
        f"{api.url}/v2/{api.tenant}/servers",
        data=b"name=x",
        headers={"X-Auth-Token": api.token, "Content-Type": "text/plain"},
    ) as response:
        assert response.status == 415
        assert "badMediaType" in await response.json()
    async with api.session.post(
        f"{api.url}/v2/{api.tenant}/servers",
        data=b"x" * 200_000,
        headers={"X-Auth-Token": api.token, "Content-Type": "application/json"},
    ) as response:
        assert response.status == 413
        assert "overLimit" in await response.json()


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b"[" * 50_000),
        ("application/json", b'{"server": ' + b'{"a": ' * 40 + b"1" + b"}" * 41),
        ("application/xml", b"<server>" + b"<a>" * 10_000 + b"</a>" * 10_000 + b"</server>"),
    ],
    ids=["json-unclosed", "json-40-deep", "xml-10000-deep"],
)
async def test_deeply_nested_bodies_are_bad_requests(
    api: ComputeClient, content_type: str, body: bytes
) -> None:
    async with api.session.post(
        f"{api.url}/v2/{api.tenant}/servers",
        data=body,
        headers={"X-Auth-Token": api.token, "Content-Type": content_type},
    ) as response:
        assert response.status == 400
        assert "badRequest" in await response.json()


async def test_unknown_paths_and_methods_are_faults(api: ComputeClient) -> None:
    missing = await api.get("/nothing-here")
    assert missing.status == 404 and "itemNotFound" in missing.body
    wrong = await api.request("PUT", "/flavors")
    assert wrong.status == 405 and "badMethod" in wrong.body
    bad_id = await api.get("/servers/not-a-uuid")
    assert bad_id.status == 404


async def test_requests_without_a_valid_token_are_refused(
    system: System, http: aiohttp.ClientSession, client_for: Callable[[str, str], ComputeClient]
) -> None:
    async with http.get(f"{system.url}/v2/demo/servers") as response:
        assert response.status == 401
        assert "unauthorized" in await response.json()
    intruder = client_for("demo", "mallory")
    intruder.token = "mallory:other-project"
    reply = await intruder.get("/servers")
    assert reply.status == 403 and "forbidden" in reply.body
    admin = client_for("demo", "admin")
    admin.token = "admin:admin"
    assert (await admin.get("/servers")).status == 200


async def test_noauth_handshake_hands_out_a_token(
    system: System, http: aiohttp.ClientSession
) -> None:
    async with http.get(
        f"{system.url}/v2/", headers={"X-Auth-User": "alice", "X-Auth-Project-Id": "demo"}
    ) as response:
        assert response.status == 204
        assert response.headers["X-Auth-Token"] == "alice:demo"
        assert response.headers["X-Server-Management-Url"].endswith("/v2/demo")


async def test_server_list_pagination_follows_next_links(api: ComputeClient) -> None:
    ids = []
    for i in range(5):
        ids.append((await api.create_server(f"p{i}", IMAGE)).body["server"]["id"])
    seen: list[str] = []
    page = await api.get("/servers?limit=2")
    while True:
        seen += [s["id"] for s in page.body["servers"]]
        links = page.body.get("servers_links", [])
        if not links:
            break
        page = await api.get(links[0]["href"])
    assert seen == list(reversed(ids))  # newest first
    assert (await api.get("/servers?marker=00000000-0000-0000-0000-000000000000")).status == 400
    for server_id in ids:
        await api.delete_and_wait(server_id)
