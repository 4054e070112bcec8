"""The image service on an S3 bucket end to end (STRATUS_IMAGE_S3_*): a gateway of the
running system configured for radosgw takes an upload through the image API, serves it back,
boots a server from it, and a deleted image's object leaves the bucket; ``stratus image
import`` writes into the same bucket. radosgw is real (tests/support/radosgw.py)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import struct
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from api_gateway.image_purge import purge_deleted_image_data
from shared.image_data.s3 import S3ImageData
from stratus import cli
from stratus.system import System
from tests.integration.conftest import new_bucket
from tests.support.client import ComputeClient
from tests.support.gateway import gateway_of_its_own
from tests.support.image_service import uploaded_image
from tests.support.radosgw import S3Account

pytestmark = pytest.mark.integration

DATA = os.urandom(9 << 20) + b"the end"  # more than one part: a multipart upload


@pytest.fixture
async def bucket(radosgw: S3Account) -> AsyncIterator[S3ImageData]:
    """A new bucket, and a store on it to look into it with."""
    store = await new_bucket(radosgw)
    yield store
    await store.aclose()


def s3_settings(radosgw: S3Account, bucket: S3ImageData) -> dict[str, object]:
    return {
        "image_s3_bucket": bucket.bucket,
        "image_s3_endpoint": radosgw.endpoint,
        "image_s3_access_key": radosgw.access_key,
        "image_s3_secret_key": radosgw.secret_key,
        "image_s3_region": radosgw.region,
        "image_s3_part_size_mb": 5,
    }


async def test_an_upload_lands_in_the_bucket_and_a_server_boots_from_it(
    system: System,
    api: ComputeClient,
    radosgw: S3Account,
    bucket: S3ImageData,
    tmp_path: Path,
) -> None:
    async with gateway_of_its_own(system, tmp_path, **s3_settings(radosgw, bucket)) as url:
        gateway = ComputeClient(api.session, url, api.tenant, "alice")
        image_id = await uploaded_image(gateway, DATA, name="in-a-bucket")
        shown = (await gateway.get(f"{url}/image/v2/images/{image_id}")).body
        assert (shown["status"], shown["size"]) == ("active", len(DATA))
        assert shown["checksum"] == hashlib.md5(DATA).hexdigest()
        location = f"{image_id}.qcow2"
        assert await bucket.size(location) == len(DATA)
        left = await asyncio.to_thread(lambda: list(tmp_path.rglob(f"{image_id}*")))
        assert not left, "nothing of it in a directory"

        async with gateway.session.get(
            f"{url}/image/v2/images/{image_id}/file",
            headers={"X-Auth-Token": gateway.token, "Range": "bytes=-7"},
        ) as response:
            assert (response.status, await response.read()) == (206, b"the end")

        reply = await gateway.create_server("from-a-bucket", image_id)
        assert reply.status == 202, reply
        server_id = reply.body["server"]["id"]
        await gateway.wait_for_status(server_id, "ACTIVE")
        await gateway.delete_and_wait(server_id)

        assert (await gateway.delete(f"{url}/image/v2/images/{image_id}")).status == 204
        assert system.pool is not None
        assert location in await purge_deleted_image_data(system.pool, bucket)
        assert await bucket.size(location) is None


def qcow2(path: Path) -> Path:
    path.write_bytes(b"QFI\xfb" + struct.pack(">IQI", 3, 0, 0) + b"\0" * 4096)
    return path


async def test_stratus_image_import_writes_into_the_bucket(
    system: System,
    radosgw: S3Account,
    bucket: S3ImageData,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cli, "setup_logging", lambda *args, **kwargs: None)
    for name, value in s3_settings(radosgw, bucket).items():
        monkeypatch.setenv(f"STRATUS_{name.upper()}", str(value))
    monkeypatch.setenv("STRATUS_DATABASE_URL", system.database_url)
    monkeypatch.setenv("STRATUS_IMAGE_STORE_DIR", str(tmp_path / "no-store"))
    image_id = uuid.uuid4()
    disk = qcow2(tmp_path / "disk.qcow2")
    args = ["image", "import", "--name", "imported", "--file", str(disk), "--id", str(image_id)]
    await asyncio.to_thread(cli.main, args)
    assert await bucket.size(f"{image_id}.qcow2") == disk.stat().st_size
    assert not (tmp_path / "no-store").exists()
    assert system.pool is not None
    await system.pool.execute("UPDATE images SET deleted_at = now() WHERE id = $1", image_id)
    await purge_deleted_image_data(system.pool, bucket)
