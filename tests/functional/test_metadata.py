"""Metadata of servers and images (guide 2.6–2.6.6), in JSON and XML, with its limits."""

from __future__ import annotations

import json
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from shared.db.seed import image_id
from stratus.system import System
from tests.conftest import IMAGE
from tests.support.client import ComputeClient
from tests.support.xml import COMPUTE, JSON, XML, metas, sample, send

LIMIT = 128  # quota_metadata_items in the test system (maxServerMeta / maxImageMeta)


def _json_sample(name: str) -> Any:
    return json.loads(sample(name))


@pytest.fixture
async def server(api: ComputeClient) -> AsyncIterator[str]:
    reply = await api.create_server("meta", IMAGE, metadata={"Label": "Old"})
    server_id: str = reply.body["server"]["id"]
    await api.wait_for_status(server_id, "ACTIVE")
    yield server_id
    await api.delete_and_wait(server_id)


async def _insert_image(
    system: System, *, owner: str | None, public: bool, metadata: dict[str, str] | None = None
) -> str:
    assert system.pool is not None
    new_id = uuid.uuid4()
    await system.pool.execute(
        "INSERT INTO images (id, name, status, progress, owner, is_public)"
        " VALUES ($1, $2, 'active', 100, $3, $4)",
        new_id,
        f"img-{new_id.hex[:6]}",
        owner,
        public,
    )
    await system.pool.executemany(
        "INSERT INTO image_metadata (image_id, key, value) VALUES ($1, $2, $3)",
        [(new_id, k, v) for k, v in (metadata or {}).items()],
    )
    return str(new_id)


async def _drop_image(system: System, image: str) -> None:
    assert system.pool is not None
    await system.pool.execute("DELETE FROM images WHERE id = $1", uuid.UUID(image))


# --- servers ---------------------------------------------------------------------------------


async def test_server_metadata_in_json_as_in_the_samples(api: ComputeClient, server: str) -> None:
    path = f"/servers/{server}/metadata"
    listed = await api.get(path)
    assert (listed.status, listed.body) == (200, {"metadata": {"Label": "Old"}})

    replaced = await api.request("PUT", path, _json_sample("2.52-set-metadata-request.json"))
    assert (replaced.status, replaced.body) == (
        200,
        _json_sample("2.54-set-metadata-response.json"),
    )
    merged = await api.post(path, _json_sample("2.56-update-metadata-request.json"))
    assert (merged.status, merged.body) == (200, _json_sample("2.58-update-metadata-response.json"))

    item = await api.get(f"{path}/Label")
    assert (item.status, item.body) == (200, {"meta": {"Label": "Web2"}})
    set_item = await api.request(
        "PUT", f"{path}/Label", _json_sample("2.62-set-metadata-item-request.json")
    )
    assert (set_item.status, set_item.body) == (
        200,
        _json_sample("2.64-set-metadata-item-response.json"),
    )
    new_item = await api.request("PUT", f"{path}/Role", {"meta": {"Role": "db"}})
    assert (new_item.status, new_item.body) == (200, {"meta": {"Role": "db"}})

    assert (await api.delete(f"{path}/Version")).status == 204
    assert (await api.get(f"{path}/Version")).status == 404
    assert (await api.delete(f"{path}/Version")).status == 404
    expected = {"Label": "Web", "Role": "db"}
    assert (await api.get(path)).body == {"metadata": expected}
    shown = (await api.get(f"/servers/{server}")).body["server"]
    assert shown["metadata"] == expected  # the representation follows at once
    detail = (await api.get("/servers/detail")).body["servers"]
    assert [s["metadata"] for s in detail] == [expected]

    emptied = await api.request("PUT", path, {"metadata": {}})
    assert (emptied.status, emptied.body) == (200, {"metadata": {}})


async def test_server_metadata_in_xml_as_in_the_samples(api: ComputeClient, server: str) -> None:
    path = f"/servers/{server}/metadata"
    replaced = await send(api, "PUT", path, sample("2.51-set-metadata-request.xml"))
    assert replaced.status == 200, replaced
    assert replaced.xml.tag == f"{COMPUTE}metadata"
    assert metas(replaced.xml) == {"Label": "Web", "Version": "2.1"}

    merged = await send(api, "POST", path, sample("2.55-update-metadata-request.xml"))
    assert merged.status == 200, merged
    assert metas(merged.xml) == {"Label": "Web2", "Version": "2.1"}  # Ex 2.57

    set_item = await send(api, "PUT", f"{path}/Label", sample("2.61-set-metadata-item-request.xml"))
    assert set_item.status == 200, set_item
    root = set_item.xml
    assert (root.tag, root.attrib, root.text) == (f"{COMPUTE}meta", {"key": "Label"}, "Web")

    item = await send(api, "GET", f"{path}/Version")
    assert (item.xml.tag, item.xml.attrib["key"], item.xml.text) == (
        f"{COMPUTE}meta",
        "Version",
        "2.1",
    )
    listed = await send(api, "GET", path)
    assert metas(listed.xml) == {"Label": "Web", "Version": "2.1"}  # Ex 2.49
    # the nova-2013.1 samples too, and a JSON answer to an XML request
    nova = await send(
        api, "PUT", f"{path}/foo", sample("nova-2013.1/server-metadata-req.xml"), accept=JSON
    )
    assert json.loads(nova.text) == _json_sample("nova-2013.1/server-metadata-resp.json")
    emptied = await send(api, "PUT", path, "<metadata/>")
    assert emptied.status == 200 and emptied.text.rstrip().endswith("/>")
    assert metas(emptied.xml) == {}


async def test_bad_metadata_bodies_are_400_and_change_nothing(
    api: ComputeClient, server: str
) -> None:
    path = f"/servers/{server}/metadata"
    bad_sets: list[Any] = [
        {"metadata": {"": "empty key"}},
        {"metadata": {"k" * 256: "v"}},
        {"metadata": {"k": "v" * 256}},
        {"metadata": {"k": 1}},
        {"metadata": {"k": None}},
        {"metadata": ["k", "v"]},
        {"metadata": "k=v"},
        {"meta": {"k": "v"}},
        {},
        [],
    ]
    for body in bad_sets:
        for method in ("PUT", "POST"):
            reply = await api.request(method, path, body)
            assert reply.status == 400, (method, body, reply)
            assert reply.body["badRequest"]["message"]
    bad_items: list[tuple[Any, str]] = [
        ({"meta": {"other": "v"}}, "Request body and URI mismatch"),
        ({"meta": {"k": "v", "other": "w"}}, "Request body contains too many items"),
        ({"meta": {}}, "Request body and URI mismatch"),
        ({"meta": {"k": "v" * 256}}, ""),
        ({"meta": {"k": 5}}, ""),
        ({"metadata": {"k": "v"}}, ""),
    ]
    for body, message in bad_items:
        reply = await api.request("PUT", f"{path}/k", body)
        assert reply.status == 400, (body, reply)
        assert message in reply.body["badRequest"]["message"]
    too_long_key = "k" * 256
    reply = await api.request("PUT", f"{path}/{too_long_key}", {"meta": {too_long_key: "v"}})
    assert reply.status == 400
    for raw, content_type in (("{nope", JSON), ("<metadata><meta key=", XML), ("", JSON)):
        raw_reply = await send(api, "PUT", path, raw, content_type=content_type, accept=JSON)
        assert raw_reply.status == 400, (raw, raw_reply)
    raw_reply = await send(api, "PUT", path, "<meta key='x'>v</meta>", accept=XML)
    assert raw_reply.status == 400 and raw_reply.xml.tag == f"{COMPUTE}badRequest"
    assert (await api.get(path)).body == {"metadata": {"Label": "Old"}}


async def test_more_items_than_the_limit_is_413_with_retry_after(
    api: ComputeClient, server: str
) -> None:
    path = f"/servers/{server}/metadata"
    full = {f"key{i:03}": "v" for i in range(LIMIT)}
    too_many = {**full, "one-more": "v"}
    reply = await api.request("PUT", path, {"metadata": too_many})
    assert reply.status == 413, reply
    assert reply.body["overLimit"]["code"] == 413
    assert "Retry-After" in reply.headers
    assert (await api.get(path)).body == {"metadata": {"Label": "Old"}}

    # Label + 127 more = the limit exactly; one more by merge or by item is too many
    almost = {f"key{i:03}": "v" for i in range(LIMIT - 1)}
    assert (await api.post(path, {"metadata": almost})).status == 200
    assert (await api.post(path, {"metadata": {"extra": "v"}})).status == 413
    assert (await api.request("PUT", f"{path}/extra", {"meta": {"extra": "v"}})).status == 413
    # replacing an existing item, or deleting one, is fine at the limit
    assert (await api.request("PUT", f"{path}/Label", {"meta": {"Label": "New"}})).status == 200
    assert (await api.delete(f"{path}/key000")).status == 204
    assert (await api.request("PUT", f"{path}/extra", {"meta": {"extra": "v"}})).status == 200
    assert len((await api.get(path)).body["metadata"]) == LIMIT
    xml = await send(api, "PUT", path, _xml_metadata(too_many))
    assert xml.status == 413 and xml.xml.tag == f"{COMPUTE}overLimit"


def _xml_metadata(items: dict[str, str]) -> str:
    inner = "".join(f'<meta key="{k}">{v}</meta>' for k, v in items.items())
    return f'<metadata xmlns="http://docs.openstack.org/compute/api/v1.1">{inner}</metadata>'


async def test_unknown_server_or_key_is_404(api: ComputeClient, server: str) -> None:
    ghost = "/servers/9b0f3e1a-0000-4000-8000-000000000000/metadata"
    assert (await api.get(ghost)).status == 404
    assert (await api.request("PUT", ghost, {"metadata": {}})).status == 404
    assert (await api.post(ghost, {"metadata": {"a": "b"}})).status == 404
    assert (await api.get(f"{ghost}/a")).status == 404
    assert (await api.request("PUT", f"{ghost}/a", {"meta": {"a": "b"}})).status == 404
    assert (await api.delete(f"{ghost}/a")).status == 404
    assert (await api.get("/servers/not-a-uuid/metadata")).status == 404
    missing = await api.get(f"/servers/{server}/metadata/absent")
    assert missing.status == 404
    assert missing.body["itemNotFound"]["message"] == "Metadata item was not found"


async def test_other_projects_cannot_see_or_change_a_servers_metadata(
    client_for: Callable[[str, str], ComputeClient], server: str
) -> None:
    stranger = client_for(f"t{uuid.uuid4().hex[:10]}", "mallory")
    path = f"/servers/{server}/metadata"
    assert (await stranger.get(path)).status == 404
    assert (await stranger.request("PUT", path, {"metadata": {}})).status == 404


async def test_metadata_writes_wait_for_a_state_that_allows_them(
    api: ComputeClient,
    client_for: Callable[[str, str], ComputeClient],
    server: str,
    system: System,
) -> None:
    assert system.pool is not None
    path = f"/servers/{server}/metadata"
    sid = uuid.UUID(server)

    async def put_item(client: ComputeClient) -> Any:
        return await client.request("PUT", f"{path}/k", {"meta": {"k": "v"}})

    try:
        await system.pool.execute("UPDATE servers SET vm_state = 'error' WHERE id = $1", sid)
        refused = await put_item(api)
        assert refused.status == 409
        assert refused.body["conflictingRequest"]["message"] == (
            "Cannot 'update metadata' while instance is in vm_state error"
        )
        deleting = await api.delete(f"{path}/Label")
        assert deleting.status == 409
        assert "delete metadata" in deleting.body["conflictingRequest"]["message"]
        assert (await api.get(path)).status == 200  # reading is always fine

        await system.pool.execute("UPDATE servers SET vm_state = 'building' WHERE id = $1", sid)
        building = await put_item(api)
        assert building.status == 409 and "buildInProgress" in building.body

        for state in ("paused", "suspended", "stopped"):
            await system.pool.execute("UPDATE servers SET vm_state = $2 WHERE id = $1", sid, state)
            assert (await put_item(api)).status == 200, state

        await system.pool.execute(
            "UPDATE servers SET vm_state = 'active', locked = true WHERE id = $1", sid
        )
        locked = await put_item(api)
        assert locked.status == 409 and "locked" in locked.body["conflictingRequest"]["message"]
        assert (await put_item(client_for(api.tenant, "admin"))).status == 200
    finally:
        await system.pool.execute(
            "UPDATE servers SET vm_state = 'active', locked = false WHERE id = $1", sid
        )


# --- images ----------------------------------------------------------------------------------


async def test_image_metadata_of_an_own_image_as_in_the_nova_samples(
    api: ComputeClient, system: System
) -> None:
    image = await _insert_image(
        system,
        owner=api.tenant,
        public=False,
        metadata=_json_sample("nova-2013.1/image-metadata-get-resp.json")["metadata"],
    )
    path = f"/images/{image}/metadata"
    listed = await api.get(path)
    assert listed.body == _json_sample("nova-2013.1/image-metadata-get-resp.json")
    merged = await api.post(path, _json_sample("nova-2013.1/image-metadata-post-req.json"))
    assert merged.body == _json_sample("nova-2013.1/image-metadata-post-resp.json")
    replaced = await api.request(
        "PUT", path, _json_sample("nova-2013.1/image-metadata-put-req.json")
    )
    assert replaced.body == _json_sample("nova-2013.1/image-metadata-put-resp.json")
    item = await api.request(
        "PUT",
        f"{path}/auto_disk_config",
        _json_sample("nova-2013.1/image-meta-key-put-req.json"),
    )
    assert item.body == _json_sample("nova-2013.1/image-meta-key-put-resp.json")
    xml_item = await send(
        api, "PUT", f"{path}/Label", '<meta key="Label">Gold</meta>', content_type=XML
    )
    assert (xml_item.xml.attrib["key"], xml_item.xml.text) == ("Label", "Gold")
    assert (await api.get(f"{path}/Label")).body == {"meta": {"Label": "Gold"}}
    assert (await api.delete(f"{path}/Label")).status == 204
    assert (await api.get(f"{path}/Label")).status == 404
    shown = (await api.get(f"/images/{image}")).body["image"]
    assert shown["metadata"] == {"auto_disk_config": "False"}
    assert (
        await api.request("PUT", path, {"metadata": {f"k{i}": "v" for i in range(LIMIT + 1)}})
    ).status == 413
    assert (await api.delete(f"/images/{image}")).status == 204
    assert (await api.get(path)).status == 404


async def test_image_metadata_in_xml_as_in_the_nova_samples(
    api: ComputeClient, system: System
) -> None:
    start = metas(ET.fromstring(sample("nova-2013.1/image-metadata-get-resp.xml")))
    image = await _insert_image(system, owner=api.tenant, public=False, metadata=start)
    path = f"/images/{image}/metadata"
    try:
        listed = await send(api, "GET", path)
        assert (listed.xml.tag, metas(listed.xml)) == (f"{COMPUTE}metadata", start)
        for method, request, response in (
            ("POST", "image-metadata-post-req.xml", "image-metadata-post-resp.xml"),
            ("PUT", "image-metadata-put-req.xml", "image-metadata-put-resp.xml"),
        ):
            reply = await send(api, method, path, sample(f"nova-2013.1/{request}"))
            assert reply.status == 200, reply
            assert metas(reply.xml) == metas(ET.fromstring(sample(f"nova-2013.1/{response}")))
        item = await send(
            api,
            "PUT",
            f"{path}/auto_disk_config",
            sample("nova-2013.1/image-meta-key-put-req.xml"),
        )
        expected = ET.fromstring(sample("nova-2013.1/image-meta-key-put-resp.xml"))
        assert (item.xml.tag, item.xml.attrib, item.xml.text) == (
            expected.tag,
            expected.attrib,
            expected.text,
        )
        shown = await send(api, "GET", f"{path}/auto_disk_config")
        assert (shown.xml.attrib["key"], shown.xml.text) == ("auto_disk_config", "False")
        mismatch = await send(api, "PUT", f"{path}/other", '<meta key="Label">x</meta>')
        assert mismatch.status == 400 and mismatch.xml.tag == f"{COMPUTE}badRequest"
    finally:
        await _drop_image(system, image)


async def test_public_base_images_are_read_only_except_for_administrators(
    api: ComputeClient, client_for: Callable[[str, str], ComputeClient], system: System
) -> None:
    seeded = f"/images/{IMAGE}/metadata"
    assert (await api.get(seeded)).status == 200
    for method, path, body in (
        ("PUT", seeded, {"metadata": {"a": "b"}}),
        ("POST", seeded, {"metadata": {"a": "b"}}),
        ("PUT", f"{seeded}/a", {"meta": {"a": "b"}}),
        ("DELETE", f"{seeded}/a", None),
    ):
        reply = await api.request(method, path, body)
        assert reply.status == 403, (method, path, reply)
        assert reply.body["forbidden"]["code"] == 403
    assert (await api.get(seeded)).body == {"metadata": {}}
    debian = image_id("debian-12-genericcloud-amd64")
    assert (
        await api.request("PUT", f"/images/{debian}/metadata/a", {"meta": {"a": "b"}})
    ).status == 403

    public = await _insert_image(system, owner=None, public=True, metadata={"os": "linux"})
    try:
        admin = client_for(api.tenant, "admin")
        path = f"/images/{public}/metadata"
        assert (await api.post(path, {"metadata": {"x": "y"}})).status == 403
        changed = await admin.post(path, {"metadata": {"x": "y"}})
        assert (changed.status, changed.body) == (200, {"metadata": {"os": "linux", "x": "y"}})
        assert (await admin.delete(f"{path}/x")).status == 204
    finally:
        await _drop_image(system, public)


async def test_another_projects_private_image_is_not_found(
    api: ComputeClient, client_for: Callable[[str, str], ComputeClient], system: System
) -> None:
    theirs = await _insert_image(system, owner=f"t{uuid.uuid4().hex[:10]}", public=False)
    try:
        path = f"/images/{theirs}/metadata"
        assert (await api.get(path)).status == 404
        assert (await api.request("PUT", f"{path}/a", {"meta": {"a": "b"}})).status == 404
        assert (await api.get("/images/not-a-uuid/metadata")).status == 404
    finally:
        await _drop_image(system, theirs)
