"""A host's cache of images (issue 14): an agent downloads an image from the gateway's image
API through a signed URL, checks it against the image service's MD5, keeps it under
``_base`` and removes it once unused; the signed URL opens nothing else."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import REGISTRY

from compute_agent.image_cache import ImageCache
from compute_agent.image_service import ImageServiceClient
from compute_agent.virt.driver import DriverError
from shared import image_urls
from shared.image_urls import HostResource
from shared.messages import ImageSpec
from shared.sealing import Keyring, generate_key
from stratus.system import System
from tests import conftest
from tests.conftest import IMAGE, MESSAGE_KEY
from tests.support.actions import act, wait_for_image
from tests.support.client import ComputeClient
from tests.support.databases import fresh_database
from tests.support.image_service import uploaded_image
from tests.support.processes import free_port

DATA = os.urandom(3_000_000)
SIGNED_ROUTE = image_urls.PATH
OCTETS = "application/octet-stream"


async def _uploaded(api: ComputeClient, data: bytes = DATA) -> ImageSpec:
    """An image uploaded through the image API, as a command's spec names it."""
    image_id = await uploaded_image(api, data, "cached")
    return ImageSpec(
        id=uuid.UUID(image_id),
        name="cached",
        location=f"{image_id}.qcow2",
        checksum=hashlib.md5(data).hexdigest(),
    )


def _downloads() -> float:
    value = REGISTRY.get_sample_value(
        "stratus_http_requests_total", {"route": SIGNED_ROUTE, "method": "GET", "status": "200"}
    )
    return value or 0.0


@pytest.fixture
def cache(system: System, tmp_path: Path) -> ImageCache:
    client = ImageServiceClient(system.url, Keyring.from_setting(MESSAGE_KEY))
    return ImageCache(tmp_path / "_base", client)


async def test_an_image_is_downloaded_once_checked_and_kept(
    api: ComputeClient, cache: ImageCache
) -> None:
    image = await _uploaded(api)
    before = _downloads()
    paths = await asyncio.gather(*(cache.ensure(image) for _ in range(4)))
    assert set(paths) == {cache.path(image.id)}
    assert cache.path(image.id).read_bytes() == DATA
    assert _downloads() - before == 1  # four builds at once, one download
    assert await cache.ensure(image) == cache.path(image.id)
    assert _downloads() - before == 1  # kept: no second download
    assert [p.name for p in cache.root.iterdir()] == [str(image.id)]


async def test_a_download_that_does_not_check_out_is_not_kept(
    api: ComputeClient, cache: ImageCache
) -> None:
    image = await _uploaded(api)
    wrong = image.model_copy(update={"checksum": "0" * 32})
    with pytest.raises(DriverError, match="not the image service's"):
        await cache.ensure(wrong)
    assert list(cache.root.iterdir()) == []
    gone = image.model_copy(update={"id": uuid.uuid4()})
    with pytest.raises(DriverError, match="404"):
        await cache.ensure(gone)
    assert list(cache.root.iterdir()) == []


async def test_signed_urls_open_one_image_for_a_while_and_nothing_else(
    api: ComputeClient, system: System, http: aiohttp.ClientSession
) -> None:
    image = await _uploaded(api)
    keyring = Keyring.from_setting(MESSAGE_KEY)
    good = image_urls.signed_url(system.url, keyring, HostResource.IMAGE, image.id, 60)
    async with http.get(good) as answer:
        assert answer.status == 200
        assert await answer.read() == DATA
    other = (await _uploaded(api, b"other")).id
    refused = [
        good.replace(str(image.id), str(other)),  # another image, same signature
        image_urls.signed_url(system.url, keyring, HostResource.IMAGE, image.id, -1),  # expired
        image_urls.signed_url(
            system.url, Keyring.from_setting(generate_key()), HostResource.IMAGE, image.id, 60
        ),
        good.split("?")[0],  # no signature at all
        f"{good.split('?')[0]}?expires={int(time.time()) + 60}&signature=x.y",
    ]
    for url in refused:
        async with http.get(url) as answer:
            assert answer.status == 403, url
    # a user's token does not stand in for a signature
    async with http.get(good.split("?")[0], headers={"X-Auth-Token": api.token}) as answer:
        assert answer.status == 403


async def test_unused_images_go_after_their_age_used_ones_stay(
    api: ComputeClient, cache: ImageCache, tmp_path: Path
) -> None:
    used, unused, fresh = [await _uploaded(api, bytes([n]) * 1000) for n in range(3)]
    for image in (used, unused, fresh):
        await cache.ensure(image)
    old = time.time() - 3600
    for image in (used, unused):
        os.utime(cache.path(image.id), (old, old))
    (cache.root / ".fetch-stopped").write_bytes(b"half")
    os.utime(cache.root / ".fetch-stopped", (old, old))
    removed = await cache.sweep([cache.path(used.id)], max_age_s=600)
    assert sorted(removed) == sorted([str(unused.id), ".fetch-stopped"])
    assert sorted(p.name for p in cache.root.iterdir()) == sorted([str(used.id), str(fresh.id)])


async def test_a_host_stores_the_image_of_a_server_through_the_image_api(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """Agents that reach the image service over HTTP (STRATUS_IMAGE_API_URL): createImage
    writes the image on the host, stores it through the gateway's signed PUT, and the image
    is active with the MD5 and SHA-512 the image service computed; the host keeps nothing."""
    port = free_port()
    settings = conftest.test_settings(
        tmp_path, api_port=port, image_api_url=f"http://127.0.0.1:{port}"
    )
    async with fresh_database() as url:
        system = System(settings, url, {"uploading-host": conftest.make_driver(tmp_path)})
        await system.start()
        try:
            api = ComputeClient(http, system.url, "t-upload", "alice")
            server = await api.create_server("snap-me", IMAGE)
            server_id = server.body["server"]["id"]
            await api.wait_for_status(server_id, "ACTIVE")
            reply = await act(api, server_id, {"createImage": {"name": "stored"}})
            assert reply.status == 202, reply
            image_id = reply.headers["Location"].rsplit("/", 1)[1]
            await wait_for_image(api, image_id, "ACTIVE")
            shown = (await api.get(f"{api.url}/image/v2/images/{image_id}")).body
            stored = settings.image_store / f"{image_id}.qcow2"
            data = stored.read_bytes()
            assert shown["checksum"] == hashlib.md5(data).hexdigest()
            assert (shown["os_hash_algo"], shown["os_hash_value"]) == (
                "sha512",
                hashlib.sha512(data).hexdigest(),
            )
            assert shown["size"] == len(data)
            assert list((settings.data_dir / "scratch").glob("*")) == []
            await api.delete_and_wait(server_id)
        finally:
            await system.stop()


async def test_only_an_image_a_host_is_saving_takes_a_hosts_data(
    api: ComputeClient, system: System, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    keyring = Keyring.from_setting(MESSAGE_KEY)
    client = ImageServiceClient(system.url, keyring)
    source = tmp_path / "image"
    source.write_bytes(b"data")
    uploaded = await _uploaded(api)  # active, and no server's
    with pytest.raises(DriverError, match="409"):
        await client.upload(uploaded.id, source)
    with pytest.raises(DriverError, match="404"):
        await client.upload(uuid.uuid4(), source)
    # a signature for a download does not store anything
    get_url = image_urls.signed_url(system.url, keyring, HostResource.IMAGE, uploaded.id, 60)
    async with http.put(
        get_url, data=b"x", headers={"Content-Type": "application/octet-stream"}
    ) as answer:
        assert answer.status == 403


async def test_a_resized_servers_disk_goes_between_hosts_through_the_gateway(
    system: System, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    keyring = Keyring.from_setting(MESSAGE_KEY)
    client = ImageServiceClient(system.url, keyring)
    server_id = uuid.uuid4()
    disk = tmp_path / "disk"
    disk.write_bytes(DATA)
    await client.send_disk(server_id, disk)
    arrived = tmp_path / "arrived"
    await client.receive_disk(server_id, arrived)
    assert arrived.read_bytes() == DATA
    # one server's signature opens no other's disk, and a GET's no PUT
    other = image_urls.signed_url(
        system.url, keyring, HostResource.TRANSFER, server_id, 60
    ).replace(str(server_id), str(uuid.uuid4()))
    async with http.get(other) as answer:
        assert answer.status == 403
    get_url = image_urls.signed_url(system.url, keyring, HostResource.TRANSFER, server_id, 60)
    async with http.put(get_url, data=b"x", headers={"Content-Type": OCTETS}) as answer:
        assert answer.status == 403
    await client.drop_disk(server_id)
    await client.drop_disk(server_id)  # again: nothing to drop, no error
    with pytest.raises(DriverError, match="404"):
        await client.receive_disk(server_id, tmp_path / "again")


async def test_a_file_an_image_names_is_fetched_once_and_nothing_outside_the_store(
    system: System, cache: ImageCache, http: aiohttp.ClientSession
) -> None:
    store = system.settings.image_store
    store.mkdir(parents=True, exist_ok=True)
    name = f"{uuid.uuid4()}.kernel"
    (store / name).write_bytes(b"a kernel")
    path = await cache.ensure_file(name)
    assert (path.name, path.read_bytes()) == (f"file-{name}", b"a kernel")
    (store / name).write_bytes(b"changed")
    assert (await cache.ensure_file(name)).read_bytes() == b"a kernel"  # kept, not fetched
    keyring = Keyring.from_setting(MESSAGE_KEY)
    for outside in ("../../etc/passwd", ".upload-x", "no-such-file"):
        url = image_urls.signed_url(system.url, keyring, HostResource.FILE, outside, 60)
        async with http.get(url) as answer:
            assert answer.status == 404, (outside, answer.status)
    (store / name).unlink()
