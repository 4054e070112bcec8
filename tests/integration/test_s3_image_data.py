"""The S3 image store (shared/image_data/s3.py) against a real S3 server: radosgw on a
throw-away Ceph cluster of the session's own (tests/support/radosgw.py), never a mock.

Without Ceph's packages the tests skip, saying what to install; CI sets STRATUS_REQUIRE_S3,
which makes that a failure.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import uuid
from collections.abc import AsyncIterator

import pytest
from types_aiobotocore_s3 import S3Client

from shared.image_data import TooLarge
from shared.image_data.s3 import PART_SIZE, S3ImageData
from tests.integration.conftest import new_bucket
from tests.support.radosgw import S3Account

pytestmark = pytest.mark.integration

MiB = 1 << 20


@pytest.fixture(scope="session")
async def store(radosgw: S3Account) -> AsyncIterator[S3ImageData]:
    the_store = await new_bucket(radosgw)
    yield the_store
    await the_store.aclose()


@pytest.fixture
async def s3(store: S3ImageData) -> S3Client:
    return await store.client()


def name() -> str:
    return f"{uuid.uuid4()}.qcow2"


def data(size: int) -> bytes:
    return random.Random(size).randbytes(size)


async def chunks(payload: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    """``payload`` as an upload arrives: in network-sized pieces, with waits between."""
    for offset in range(0, len(payload), size):
        yield payload[offset : offset + size]
        await asyncio.sleep(0)


async def read_all(
    store: S3ImageData, location: str, start: int = 0, end: int | None = None
) -> bytes:
    return b"".join([chunk async for chunk in store.read(location, start, end)])


async def uploads(s3: S3Client, store: S3ImageData, key: str) -> list[str]:
    """The incomplete multipart uploads of ``key`` in the store's bucket."""
    listed = await s3.list_multipart_uploads(Bucket=store.bucket, Prefix=key)
    return [upload["UploadId"] for upload in listed.get("Uploads", [])]


def assert_hashes(saved_checksum: str, saved_hash: str, payload: bytes) -> None:
    assert saved_checksum == hashlib.md5(payload).hexdigest()
    assert saved_hash == hashlib.sha512(payload).hexdigest()


@pytest.mark.parametrize("size", [0, 1, 3 * MiB + 7], ids=["empty", "one-byte", "under-a-part"])
async def test_save_and_read_back(store: S3ImageData, size: int) -> None:
    payload, key = data(size), name()
    saved = await store.save(key, chunks(payload))
    assert saved.location == key
    assert saved.size == size
    assert saved.os_hash_algo == "sha512"
    assert_hashes(saved.checksum, saved.os_hash_value, payload)
    assert await store.size(key) == size
    assert await read_all(store, key) == payload


async def test_read_by_ranges(store: S3ImageData) -> None:
    payload, key = data(3 * MiB + 7), name()
    await store.save(key, chunks(payload))
    size = len(payload)
    for start, end in [
        (0, 1),
        (0, 10),
        (100, 200),
        (MiB - 1, 2 * MiB + 1),
        (size - 1, size),
        (size - 1, None),
        (1234, None),
        (0, size),
        (0, size + 100),  # a file read stops at the end, as S3 does
    ]:
        assert await read_all(store, key, start, end) == payload[start:end], (start, end)
    # nothing (no error) for an empty or reversed range, or one past the end
    assert await read_all(store, key, 10, 10) == b""
    assert await read_all(store, key, 20, 10) == b""
    assert await read_all(store, key, size, None) == b""
    assert await read_all(store, key, size + 5, size + 10) == b""


@pytest.mark.parametrize(
    "size", [2 * PART_SIZE, 20 * MiB + 3], ids=["two-whole-parts", "two-parts-and-a-bit"]
)
async def test_save_larger_than_a_part(store: S3ImageData, s3: S3Client, size: int) -> None:
    payload, key = data(size), name()
    saved = await store.save(key, chunks(payload, 1 * MiB + 13))
    assert saved.size == size
    assert_hashes(saved.checksum, saved.os_hash_value, payload)
    assert await store.size(key) == size
    assert await read_all(store, key) == payload
    across = (PART_SIZE - 5, PART_SIZE + 5)
    assert await read_all(store, key, *across) == payload[across[0] : across[1]]
    assert await read_all(store, key, size - 3, None) == payload[-3:]
    # a multipart object's ETag says how many parts it was made of
    head = await s3.head_object(Bucket=store.bucket, Key=key)
    assert head["ETag"].strip('"').endswith(f"-{-(-size // PART_SIZE)}")
    assert await uploads(s3, store, key) == []


@pytest.mark.parametrize(
    ("size", "limit"),
    [(3 * MiB, MiB), (20 * MiB, 10 * MiB), (PART_SIZE + 1, PART_SIZE)],
    ids=["within-the-first-part", "after-a-part-went-up", "by-one-byte"],
)
async def test_too_large_leaves_nothing(
    store: S3ImageData, s3: S3Client, size: int, limit: int
) -> None:
    key = name()
    with pytest.raises(TooLarge) as raised:
        await store.save(key, chunks(data(size)), limit=limit)
    assert raised.value.limit == limit
    assert await store.size(key) is None
    assert await uploads(s3, store, key) == []


async def test_exactly_the_limit_is_saved(store: S3ImageData) -> None:
    key = name()
    saved = await store.save(key, chunks(data(PART_SIZE)), limit=PART_SIZE)
    assert saved.size == await store.size(key) == PART_SIZE


class Broken(Exception):
    pass


@pytest.mark.parametrize("after", [MiB, 12 * MiB], ids=["before-a-part", "after-a-part"])
async def test_failing_upload_leaves_nothing(store: S3ImageData, s3: S3Client, after: int) -> None:
    """The client's connection drops mid-upload: what reading it raised is raised, and
    nothing is kept (neither an object nor a multipart upload)."""

    async def dropping() -> AsyncIterator[bytes]:
        async for chunk in chunks(data(after)):
            yield chunk
        raise Broken("the client went away")

    key = name()
    with pytest.raises(Broken):
        await store.save(key, dropping())
    assert await store.size(key) is None
    assert await uploads(s3, store, key) == []


async def test_a_cancelled_save_leaves_nothing(store: S3ImageData, s3: S3Client) -> None:
    """The save's task is cancelled (its gateway stops) after a part went up: the upload is
    still aborted."""
    stalled = asyncio.Event()

    async def stalling() -> AsyncIterator[bytes]:
        async for chunk in chunks(data(PART_SIZE + MiB)):
            yield chunk
        stalled.set()
        await asyncio.Event().wait()  # the client never sends the rest
        yield b""

    key = name()
    saving = asyncio.create_task(store.save(key, stalling()))
    await asyncio.wait_for(stalled.wait(), 30)
    assert len(await uploads(s3, store, key)) == 1
    saving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await saving
    assert await store.size(key) is None
    assert await uploads(s3, store, key) == []


async def test_a_failed_save_keeps_what_was_there(store: S3ImageData) -> None:
    """All or nothing, also over data already under the location."""
    payload, key = data(MiB), name()
    await store.save(key, chunks(payload))

    async def dropping() -> AsyncIterator[bytes]:
        yield data(12 * MiB)
        raise Broken

    with pytest.raises(Broken):
        await store.save(key, dropping())
    assert await read_all(store, key) == payload


async def test_delete(store: S3ImageData) -> None:
    key = name()
    await store.save(key, chunks(data(MiB)))
    await store.delete(key)
    assert await store.size(key) is None
    with pytest.raises(FileNotFoundError):
        await read_all(store, key)
    await store.delete(key)  # no error for what is not there


async def test_nothing_is_no_size_and_no_data(store: S3ImageData) -> None:
    key = name()
    assert await store.size(key) is None
    with pytest.raises(FileNotFoundError):
        await read_all(store, key)


async def test_sweep_aborts_an_abandoned_upload(store: S3ImageData, s3: S3Client) -> None:
    """A gateway died mid-save: its upload stays until a sweep old enough aborts it."""
    key = name()
    created = await s3.create_multipart_upload(Bucket=store.bucket, Key=key)
    await s3.upload_part(
        Bucket=store.bucket,
        Key=key,
        UploadId=created["UploadId"],
        PartNumber=1,
        Body=data(5 * MiB),
    )
    assert await store.sweep(3600) == []
    assert await uploads(s3, store, key) == [created["UploadId"]]
    assert await store.sweep(0) == [key]
    assert await uploads(s3, store, key) == []
    assert await store.size(key) is None
    assert await store.sweep(0) == []


async def test_sweep_keeps_an_upload_still_receiving_parts(
    store: S3ImageData, s3: S3Client
) -> None:
    """An upload's age is its last part's: one begun long ago that still receives parts is
    a slow upload, not an abandoned one."""
    key = name()
    created = await s3.create_multipart_upload(Bucket=store.bucket, Key=key)
    await asyncio.sleep(2.5)
    await s3.upload_part(
        Bucket=store.bucket, Key=key, UploadId=created["UploadId"], PartNumber=1, Body=b"x"
    )
    assert await store.sweep(1.5) == []
    assert await uploads(s3, store, key) == [created["UploadId"]]
    assert await store.sweep(0) == [key]
    assert await uploads(s3, store, key) == []
