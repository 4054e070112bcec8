"""Images users bring through the image service API (Glance v2, issue 14): create, upload,
download, patch, delete, tasks and schemas; quotas and policy; what an interrupted or refused
upload leaves (nothing)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from api_gateway.image_purge import purge_deleted_image_data
from shared.db import image_uploads
from shared.image_data.filesystem import DirectoryImageData
from stratus.system import System
from tests.conftest import IMAGE
from tests.support.client import ComputeClient, Reply
from tests.support.gateway import gateway_of_its_own

OCTETS = {"Content-Type": "application/octet-stream"}
PATCH = {"Content-Type": "application/openstack-images-v2.1-json-patch"}
DATA = os.urandom(300_000) + b"the end"


def _image(api: ComputeClient, path: str = "") -> str:
    return f"{api.url}/image/v2/images{path}"


async def _create(api: ComputeClient, **body: Any) -> dict[str, Any]:
    reply = await api.request(
        "POST", _image(api), {"disk_format": "qcow2", "container_format": "bare", **body}
    )
    assert reply.status == 201, reply
    created: dict[str, Any] = reply.body
    return created


async def _upload(api: ComputeClient, image_id: str, data: bytes = DATA) -> Reply:
    return await api.request("PUT", _image(api, f"/{image_id}/file"), headers=OCTETS, data=data)


async def _show(api: ComputeClient, image_id: str) -> dict[str, Any]:
    reply = await api.get(_image(api, f"/{image_id}"))
    assert reply.status == 200, reply
    shown: dict[str, Any] = reply.body
    return shown


async def _download(api: ComputeClient, image_id: str, **headers: str) -> tuple[int, bytes, Any]:
    async with api.session.get(
        _image(api, f"/{image_id}/file"), headers={"X-Auth-Token": api.token, **headers}
    ) as response:
        return response.status, await response.read(), response.headers


def _stored(system: System, image_id: str) -> list[str]:
    """Files of the image store that hold (or are becoming) this image's data, or any
    upload's temporary file."""
    store = system.settings.image_store
    if not store.exists():
        return []
    return [p.name for p in store.iterdir() if p.name.startswith((image_id, ".upload-"))]


async def test_create_upload_download_and_boot(api: ComputeClient, system: System) -> None:
    created = await _create(api, name="mine", min_disk=1, architecture="x86_64")
    image_id = created["id"]
    assert (created["status"], created["visibility"], created["protected"]) == (
        "queued",
        "private",
        False,
    )
    assert (created["disk_format"], created["container_format"]) == ("qcow2", "bare")
    assert (created["min_disk"], created["architecture"]) == (1, "x86_64")
    assert created["size"] is None and created["checksum"] is None
    assert (await _download(api, image_id))[0] == 204  # no data yet

    uploaded = await _upload(api, image_id)
    assert uploaded.status == 204, uploaded
    shown = await _show(api, image_id)
    assert (shown["status"], shown["size"]) == ("active", len(DATA))
    assert shown["checksum"] == hashlib.md5(DATA).hexdigest()
    assert (shown["os_hash_algo"], shown["os_hash_value"]) == (
        "sha512",
        hashlib.sha512(DATA).hexdigest(),
    )

    status, body, headers = await _download(api, image_id)
    assert (status, body) == (200, DATA)
    assert headers["Content-MD5"] == shown["checksum"]
    status, body, headers = await _download(api, image_id, Range="bytes=10-19")
    assert (status, body) == (206, DATA[10:20])
    assert headers["Content-Range"] == f"bytes 10-19/{len(DATA)}"
    status, body, _ = await _download(api, image_id, Range="bytes=-7")
    assert (status, body) == (206, b"the end")
    status, _, headers = await _download(api, image_id, Range=f"bytes={len(DATA)}-")
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(DATA)}"

    # the compute API shows the same image, and a server boots from it
    assert (await api.get(f"/images/{image_id}")).body["image"]["status"] == "ACTIVE"
    server = await api.create_server("from-upload", image_id)
    assert server.status == 202, server
    await api.wait_for_status(server.body["server"]["id"], "ACTIVE")
    await api.delete_and_wait(server.body["server"]["id"])
    assert _stored(system, image_id) == [f"{image_id}.qcow2"]


async def test_an_upload_is_taken_once(api: ComputeClient) -> None:
    image_id = (await _create(api))["id"]
    assert (await _upload(api, image_id)).status == 204
    again = await _upload(api, image_id, b"other data")
    assert again.status == 409, again
    status, body, _ = await _download(api, image_id)
    assert (status, body) == (200, DATA)


async def test_concurrent_uploads_of_one_image_cannot_both_win(api: ComputeClient) -> None:
    image_id = (await _create(api))["id"]
    first, second = await asyncio.gather(
        _upload(api, image_id, b"A" * 200_000), _upload(api, image_id, b"B" * 200_000)
    )
    assert sorted([first.status, second.status]) == [204, 409], (first, second)
    status, body, _ = await _download(api, image_id)
    assert status == 200 and body in (b"A" * 200_000, b"B" * 200_000)


async def test_refused_uploads_change_nothing(api: ComputeClient, system: System) -> None:
    image_id = (await _create(api))["id"]
    wrong_type = await api.request(
        "PUT", _image(api, f"/{image_id}/file"), headers={"Content-Type": "text/plain"}, data=DATA
    )
    assert wrong_type.status == 415, wrong_type
    no_format = await api.request("POST", _image(api), {"name": "no format"})
    assert no_format.status == 201
    unformatted = await _upload(api, no_format.body["id"])
    assert unformatted.status == 400, unformatted
    assert "disk_format, container_format" in unformatted.body["badRequest"]["message"]
    for iid in (image_id, no_format.body["id"]):
        assert (await _show(api, iid))["status"] == "queued"
        assert _stored(system, iid) == []
    assert (await _upload(api, str(uuid.uuid4()))).status == 404


async def _chunks_then_abort(data: bytes) -> AsyncIterator[bytes]:
    yield data[:100_000]
    await asyncio.sleep(0.2)
    raise ConnectionAbortedError("the client went away mid-upload")


async def test_an_interrupted_upload_leaves_the_image_queued_and_nothing_stored(
    api: ComputeClient, system: System
) -> None:
    """The body is chunked and never finished: the upload cannot have completed, so the only
    sound outcome is the image queued again with no data (and a later upload succeeds)."""
    image_id = (await _create(api))["id"]
    with pytest.raises((aiohttp.ClientError, ConnectionAbortedError)):
        await api.session.put(
            _image(api, f"/{image_id}/file"),
            headers={"X-Auth-Token": api.token, **OCTETS},
            data=_chunks_then_abort(DATA),
        )
    for _ in range(200):
        if (await _show(api, image_id))["status"] == "queued":
            break
        await asyncio.sleep(0.05)
    shown = await _show(api, image_id)
    assert (shown["status"], shown["size"], shown["checksum"]) == ("queued", None, None)
    assert _stored(system, image_id) == []
    assert (await _download(api, image_id))[0] == 204
    assert (await _upload(api, image_id)).status == 204
    assert (await _show(api, image_id))["status"] == "active"


async def test_an_upload_whose_gateway_died_is_queued_again(
    api: ComputeClient, system: System
) -> None:
    """A gateway that dies mid-upload leaves the image ``saving``; once its mark is stale,
    the conductor's check puts it back to ``queued``, and a fresh upload is not reset."""
    assert system.pool is not None
    stale_id = (await _create(api))["id"]
    fresh_id = (await _create(api))["id"]
    for iid in (stale_id, fresh_id):
        assert await image_uploads.start(system.pool, uuid.UUID(iid)) is not None
    await system.pool.execute(
        "UPDATE images SET upload_seen_at = now() - interval '10 minutes' WHERE id = $1",
        uuid.UUID(stale_id),
    )
    # the conductors' periodic check may find the stale one first: either way it is queued
    reset = await image_uploads.reset_stale(system.pool, 120)
    assert uuid.UUID(fresh_id) not in reset
    assert (await _show(api, stale_id))["status"] == "queued"
    assert (await _show(api, fresh_id))["status"] == "saving"
    assert (await _upload(api, stale_id)).status == 204


async def test_patch_changes_attributes_and_properties(api: ComputeClient) -> None:
    image_id = (await _create(api, name="before", owner_note="x"))["id"]
    ops = [
        {"op": "replace", "path": "/name", "value": "after"},
        {"op": "replace", "path": "/min_ram", "value": 512},
        {"op": "add", "path": "/os_distro", "value": "cirros"},
        {"op": "remove", "path": "/owner_note"},
    ]
    patched = await api.request(
        "PATCH", _image(api, f"/{image_id}"), headers=PATCH, data=_json(ops)
    )
    assert patched.status == 200, patched
    shown = await _show(api, image_id)
    assert (shown["name"], shown["min_ram"], shown["os_distro"]) == ("after", 512, "cirros")
    assert "owner_note" not in shown
    assert (await api.get(f"/images/{image_id}/metadata")).body["metadata"] == {
        "os_distro": "cirros"
    }

    refusals = [
        ([{"op": "remove", "path": "/no_such"}], 409),
        ([{"op": "replace", "path": "/status", "value": "active"}], 403),
        ([{"op": "replace", "path": "/min_ram", "value": "lots"}], 400),
        ([{"op": "move", "path": "/name", "value": "x"}], 400),
        ([{"op": "replace", "path": "/name"}], 400),
        ({"op": "replace"}, 400),
        # all or none: the first would apply, the second refuses the patch
        (
            [{"op": "replace", "path": "/name", "value": "lost"}, {"op": "remove", "path": "/x"}],
            409,
        ),
    ]
    for body, code in refusals:
        reply = await api.request(
            "PATCH", _image(api, f"/{image_id}"), headers=PATCH, data=_json(body)
        )
        assert reply.status == code, (body, reply)
    wrong_type = await api.request("PATCH", _image(api, f"/{image_id}"), ops)
    assert wrong_type.status == 415, wrong_type
    assert (await _show(api, image_id))["name"] == "after"

    assert (await _upload(api, image_id)).status == 204
    frozen = [{"op": "replace", "path": "/disk_format", "value": "raw"}]
    reply = await api.request(
        "PATCH", _image(api, f"/{image_id}"), headers=PATCH, data=_json(frozen)
    )
    assert reply.status == 403, reply


def _json(value: object) -> bytes:
    return json.dumps(value).encode()


async def test_create_refuses_what_glance_refuses(api: ComputeClient) -> None:
    refusals: list[tuple[dict[str, Any], int]] = [
        ({"status": "active"}, 403),
        ({"size": 10}, 403),
        ({"location": "file:///etc/passwd"}, 403),
        ({"disk_format": "exe"}, 400),
        ({"container_format": "zip"}, 400),
        ({"min_disk": -1}, 400),
        ({"visibility": "public"}, 403),  # publicize_image: administrators only
        ({"visibility": "shared"}, 400),
        ({"custom": 5}, 400),  # properties are strings
        ({"id": "not-a-uuid"}, 400),
    ]
    for body, code in refusals:
        reply = await api.request("POST", _image(api), body)
        assert reply.status == code, (body, reply)
    taken = (await _create(api))["id"]
    assert (await api.request("POST", _image(api), {"id": taken})).status == 409
    xml = await api.request(
        "POST", _image(api), headers={"Content-Type": "application/xml"}, data=b"<image/>"
    )
    assert xml.status == 415
    listed = await api.get(_image(api))
    assert [i["id"] for i in listed.body["images"] if i["owner"] == api.tenant] == [taken]


async def test_policy_owner_writes_others_do_not(
    api: ComputeClient, client_for: Callable[[str, str], ComputeClient], tenant: str
) -> None:
    image_id = (await _create(api))["id"]
    stranger = client_for(f"other-{tenant}", "mallory")
    assert (await stranger.get(_image(stranger, f"/{image_id}"))).status == 404
    assert (await _upload(stranger, image_id)).status == 404
    assert (await _download(stranger, image_id))[0] == 404
    assert (await stranger.delete(_image(stranger, f"/{image_id}"))).status == 404
    rename = [{"op": "replace", "path": "/name", "value": "taken"}]
    patched = await stranger.request(
        "PATCH", _image(stranger, f"/{image_id}"), headers=PATCH, data=_json(rename)
    )
    assert patched.status == 404, patched

    # the provider's public image: readable by all, writable by none but administrators
    reply = await api.request("PATCH", _image(api, f"/{IMAGE}"), headers=PATCH, data=_json(rename))
    assert reply.status == 403, reply
    assert (await _upload(api, IMAGE)).status == 403

    admin = client_for(tenant, "admin")
    public = (await _create(admin, visibility="public", name="for all"))["id"]
    assert (await _show(stranger, public))["visibility"] == "public"
    assert (await stranger.delete(_image(stranger, f"/{public}"))).status == 403
    assert (await admin.delete(_image(admin, f"/{public}"))).status == 204


async def test_a_protected_image_is_not_deleted(api: ComputeClient) -> None:
    image_id = (await _create(api, protected=True))["id"]
    assert (await api.delete(_image(api, f"/{image_id}"))).status == 403
    assert (await api.delete(f"/images/{image_id}")).status == 403  # the compute API too
    unprotect = [{"op": "replace", "path": "/protected", "value": False}]
    reply = await api.request(
        "PATCH", _image(api, f"/{image_id}"), headers=PATCH, data=_json(unprotect)
    )
    assert reply.status == 200, reply
    assert (await api.delete(_image(api, f"/{image_id}"))).status == 204
    assert (await api.get(_image(api, f"/{image_id}"))).status == 404


async def test_tasks_and_schemas(api: ComputeClient) -> None:
    image_id = (await _create(api))["id"]
    tasks = await api.get(_image(api, f"/{image_id}/tasks"))
    assert (tasks.status, tasks.body) == (200, {"tasks": []})
    assert (await api.get(_image(api, f"/{uuid.uuid4()}/tasks"))).status == 404
    schema = await api.get(f"{api.url}/image/v2/schemas/image")
    assert schema.status == 200 and schema.body["name"] == "image"
    assert "qcow2" in schema.body["properties"]["disk_format"]["enum"]
    listing = await api.get(f"{api.url}/image/v2/schemas/images")
    assert listing.body["name"] == "images"


async def test_quotas_bound_images_and_their_bytes(
    system: System, http: aiohttp.ClientSession, tmp_path: Path, tenant: str
) -> None:
    async with gateway_of_its_own(
        system,
        tmp_path,
        image_store_dir=system.settings.image_store,  # the store _stored looks at
        quota_images=2,
        quota_image_bytes=1000,
    ) as url:
        api = ComputeClient(http, url, tenant, "alice")
        first = (await _create(api))["id"]
        second = (await _create(api))["id"]
        third = await api.request("POST", _image(api), {"disk_format": "raw"})
        assert third.status == 413, third

        declared = await _upload(api, first, b"x" * 2000)  # Content-Length says too much
        assert declared.status == 413, declared

        async def undeclared() -> AsyncIterator[bytes]:  # chunked: found out while storing
            for _ in range(4):
                yield b"y" * 500

        streamed = await api.request(
            "PUT",
            _image(api, f"/{second}/file"),
            headers=OCTETS,
            data=undeclared(),  # type: ignore[arg-type]
        )
        assert streamed.status == 413, streamed
        for iid in (first, second):
            assert (await _show(api, iid))["status"] == "queued"
            assert _stored(system, iid) == []
        assert (await _upload(api, first, b"z" * 1000)).status == 204
        assert (await _upload(api, second, b"z")).status == 413  # the project's bytes are used


async def test_a_gateway_starting_removes_half_written_uploads_of_dead_gateways(
    system: System, http: aiohttp.ClientSession, tmp_path: Path, tenant: str
) -> None:
    """A gateway that died mid-upload leaves its temporary file; the next gateway to start
    on that store removes it once it is older than the stale threshold, and leaves a fresh
    one (another gateway's upload under way) alone."""
    store = system.settings.image_store
    store.mkdir(parents=True, exist_ok=True)
    dead, alive = store / ".upload-dead", store / ".upload-alive"
    dead.write_bytes(b"half")
    alive.write_bytes(b"half")
    old = time.time() - 600
    os.utime(dead, (old, old))
    async with gateway_of_its_own(
        system, tmp_path, image_store_dir=store, image_upload_stale_after_s=120
    ) as url:
        api = ComputeClient(http, url, tenant, "alice")
        assert (await api.get(_image(api))).status == 200
    assert not dead.exists()
    assert alive.exists()
    alive.unlink()


async def test_a_deleted_images_data_goes_once_no_server_was_built_from_it(
    api: ComputeClient, system: System
) -> None:
    """A server's disk may read its image's file in place: the file of a deleted image stays
    while a live server was built from it, and goes once none is (whichever gateway's purge
    gets there: the effect is judged, not who did it)."""
    assert system.pool is not None
    store = DirectoryImageData(system.settings.image_store)
    image_id = (await _create(api))["id"]
    assert (await _upload(api, image_id)).status == 204
    server = await api.create_server("on-it", image_id)
    await api.wait_for_status(server.body["server"]["id"], "ACTIVE")
    assert (await api.delete(_image(api, f"/{image_id}"))).status == 204

    await purge_deleted_image_data(system.pool, store)
    assert _stored(system, image_id) == [f"{image_id}.qcow2"]  # the server's image still

    await api.delete_and_wait(server.body["server"]["id"])
    await purge_deleted_image_data(system.pool, store)
    assert _stored(system, image_id) == []
    assert (
        await system.pool.fetchval("SELECT location FROM images WHERE id = $1", uuid.UUID(image_id))
        is None
    )


async def test_a_gateway_removes_deleted_images_data_on_its_own(
    system: System, http: aiohttp.ClientSession, tmp_path: Path, tenant: str
) -> None:
    """The gateways' periodic purge (STRATUS_IMAGE_PURGE_INTERVAL_S) does it unasked."""
    async with gateway_of_its_own(
        system,
        tmp_path,
        image_store_dir=system.settings.image_store,
        image_purge_interval_s=0.2,
    ) as url:
        api = ComputeClient(http, url, tenant, "alice")
        image_id = (await _create(api))["id"]
        assert (await _upload(api, image_id)).status == 204
        assert _stored(system, image_id) == [f"{image_id}.qcow2"]
        assert (await api.delete(_image(api, f"/{image_id}"))).status == 204
        for _ in range(100):
            if not _stored(system, image_id):
                break
            await asyncio.sleep(0.1)
        assert _stored(system, image_id) == []
