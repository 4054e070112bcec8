"""The image service's reads under ``/image`` (Glance v2), from our own images: what clients
resolve ``--image`` through."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp

from shared.db import seed
from stratus.system import System
from tests.conftest import IMAGE
from tests.support.actions import act, active_server, wait_for_image
from tests.support.client import ComputeClient, Reply

IMAGE_NAME = seed.DEFAULT_IMAGES[0][0]


async def glance(api: ComputeClient, path: str) -> Reply:
    """GET ``path`` of the image API (``/image`` + path) with ``api``'s token."""
    return await api.get(f"{api.url}/image{path}")


async def test_discovery_needs_no_token(system: System, http: aiohttp.ClientSession) -> None:
    for path in ("/image", "/image/", "/image/versions"):
        async with http.get(f"{system.url}{path}") as response:
            assert response.status == 200, path
            body = await response.json()
        (version,) = body["versions"]
        assert (version["id"], version["status"]) == ("v2.0", "CURRENT")
        assert version["links"] == [{"rel": "self", "href": f"{system.url}/image/v2/"}]


async def test_images_need_a_token(system: System, http: aiohttp.ClientSession) -> None:
    for path in ("/image/v2/images", f"/image/v2/images/{IMAGE}"):
        async with http.get(f"{system.url}{path}") as response:
            assert response.status == 401, path
            assert response.headers["x-openstack-request-id"].startswith("req-")


async def test_an_image_by_id_in_glances_shape(api: ComputeClient) -> None:
    reply = await glance(api, f"/v2/images/{IMAGE}")
    assert reply.status == 200
    image = reply.body
    assert image["id"] == IMAGE
    assert (image["name"], image["status"], image["visibility"]) == (IMAGE_NAME, "active", "public")
    assert (image["self"], image["schema"]) == (f"/v2/images/{IMAGE}", "/v2/schemas/image")
    assert {"min_ram", "min_disk", "disk_format", "container_format", "size", "owner"} <= set(image)
    assert image["created_at"].endswith("Z")


async def test_an_image_by_name(api: ComputeClient) -> None:
    reply = await glance(api, f"/v2/images?name={IMAGE_NAME}")
    assert reply.status == 200
    assert [i["id"] for i in reply.body["images"]] == [IMAGE]
    assert reply.body["first"] == "/v2/images"
    assert "next" not in reply.body
    assert (await glance(api, "/v2/images?name=no-such-image")).body["images"] == []


async def test_unknown_images_are_404(api: ComputeClient) -> None:
    assert (await glance(api, "/v2/images/0b8e1f48-5c2e-4c51-9b8c-000000000000")).status == 404
    assert (await glance(api, "/v2/images/not-a-uuid")).status == 404
    assert (await glance(api, "/v2/nothing-here")).status == 404


async def test_bad_filters_are_400_and_unknown_ones_ignored(api: ComputeClient) -> None:
    assert (await glance(api, "/v2/images?status=bogus")).status == 400
    assert (await glance(api, "/v2/images?limit=x")).status == 400
    reply = await glance(api, f"/v2/images?name={IMAGE_NAME}&sort_key=name&os_hidden=false")
    assert [i["id"] for i in reply.body["images"]] == [IMAGE]


async def test_pages_follow_next(api: ComputeClient) -> None:
    seen: list[str] = []
    path = "/v2/images?limit=1&status=active"
    while True:
        reply = await glance(api, path)
        assert reply.status == 200
        seen.extend(i["id"] for i in reply.body["images"])
        if "next" not in reply.body:
            break
        assert len(reply.body["images"]) == 1
        path = reply.body["next"]
    whole = await glance(api, "/v2/images?status=active")
    assert seen == [i["id"] for i in whole.body["images"]]
    assert len(seen) >= len(seed.DEFAULT_IMAGES)


async def test_a_snapshot_is_private_to_its_project(
    api: ComputeClient, client_for: Callable[[str, str], ComputeClient]
) -> None:
    server_id = await active_server(api, "to-snapshot", IMAGE)
    reply = await act(api, server_id, {"createImage": {"name": "snap", "metadata": {"k": "v"}}})
    image_id = reply.headers["Location"].rsplit("/", 1)[-1]
    await wait_for_image(api, image_id, "ACTIVE")
    image = (await glance(api, f"/v2/images/{image_id}")).body
    assert (image["visibility"], image["owner"], image["status"]) == (
        "private",
        api.tenant,
        "active",
    )
    assert (image["k"], image["instance_uuid"], image["image_type"]) == ("v", server_id, "snapshot")
    stranger = client_for(f"{api.tenant}-x", "bob")
    assert (await glance(stranger, f"/v2/images/{image_id}")).status == 404
    public = f"{api.url}/image/v2/images/{IMAGE}"
    assert (await api.request("DELETE", public)).status == 403
    assert (await stranger.request("DELETE", f"{api.url}/image/v2/images/{image_id}")).status == 404
    assert (await api.request("DELETE", f"{api.url}/image/v2/images/{image_id}")).status == 204
    assert (await glance(api, f"/v2/images/{image_id}")).status == 404
    assert (await api.get(f"/images/{image_id}")).status == 404
    await api.delete_and_wait(server_id)
