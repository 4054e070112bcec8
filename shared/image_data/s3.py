"""The image store in a bucket of an S3-compatible object store (Ceph's radosgw, MinIO, AWS),
for operators whose gateways share no directory.

A location is the object's key: the ``name`` a save is given, as the directory store names
its files, so rows of ``images`` read the same whichever store wrote them. A save is a
multipart upload, completed only once every part is in: S3 makes an object visible whole
when its upload completes and never before, which is the all-or-nothing a save promises
(data smaller than one part goes up in one PUT, equally atomic). A save that fails aborts
its upload; one whose gateway died leaves an incomplete upload, invisible to readers but
holding storage, which ``sweep`` aborts.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import AsyncIterable, AsyncIterator
from typing import TYPE_CHECKING, Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from shared.image_data import Digest, ImageData, Saved, TooLarge

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef

log = logging.getLogger(__name__)

#: the size of an upload's parts: S3 wants 5 MiB at least (but for the last), and each part
#: is held in memory while it goes up, so small enough that many uploads at once stay cheap
PART_SIZE = 8 << 20
#: S3 takes at most 10,000 parts to an upload: every this many parts, they double in size,
#: so that an image of any size fits (8 MiB parts alone would stop at 80 GB)
_PARTS_PER_SIZE = 1000
#: how much of a download is read from the store at a time
_READ_CHUNK = 1 << 20


class S3ImageData:
    """The store in ``bucket`` (which the operator creates) at ``endpoint_url`` (None: AWS).

    Keys and region left None are found the way every AWS client finds them (environment,
    shared configuration files, instance metadata). The client is opened on first use, in
    the event loop that uses it, so the store can be made where no loop runs yet (as the
    settings make stores); ``aclose`` closes it.
    """

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        region: str | None = None,
        part_size: int = PART_SIZE,
    ) -> None:
        if part_size < 5 << 20:
            raise ValueError("S3 refuses upload parts smaller than 5 MiB (but for the last)")
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.part_size = part_size
        self._access_key = access_key
        self._secret_key = secret_key
        self._region = region
        self._client: S3Client | None = None
        self._closing = contextlib.AsyncExitStack()
        self._opening = asyncio.Lock()

    async def client(self) -> S3Client:
        """The open client (opened now if it is not yet)."""
        if self._client is None:
            async with self._opening:
                if self._client is None:
                    creating = get_session().create_client(
                        "s3",
                        endpoint_url=self.endpoint_url,
                        aws_access_key_id=self._access_key,
                        aws_secret_access_key=self._secret_key,
                        region_name=self._region,
                        config=AioConfig(
                            # addresses that are no DNS name of the bucket (127.0.0.1, a
                            # cluster's service name) work only with the bucket in the path
                            s3={"addressing_style": "path"},
                            # botocore 1.36 began adding CRC checksums to every request
                            # (and aws-chunked trailers to streamed ones), which not every
                            # S3-compatible store accepts: only where S3 demands them. The
                            # data's integrity rests on the MD5 and SHA-512 a save computes
                            request_checksum_calculation="when_required",
                            response_checksum_validation="when_required",
                            retries={"mode": "standard", "max_attempts": 5},
                        ),
                    )
                    self._client = await self._closing.enter_async_context(creating)
        return self._client

    async def aclose(self) -> None:
        """Close the client (a later use opens another)."""
        self._client = None
        await self._closing.aclose()

    async def save(
        self, name: str, chunks: AsyncIterable[bytes], *, limit: int | None = None
    ) -> Saved:
        s3 = await self.client()
        digest = Digest()
        received = 0
        pending = bytearray()
        upload_id: str | None = None
        parts: list[CompletedPartTypeDef] = []
        try:
            async for chunk in chunks:
                received += len(chunk)
                if limit is not None and received > limit:
                    raise TooLarge(limit)
                pending += chunk
                while len(pending) >= (size := self._part_size(len(parts) + 1)):
                    if upload_id is None:
                        created = await s3.create_multipart_upload(Bucket=self.bucket, Key=name)
                        upload_id = created["UploadId"]
                    part = bytes(pending[:size])
                    del pending[:size]
                    parts.append(await self._put_part(s3, digest, name, upload_id, parts, part))
            if upload_id is None:
                # all of it fits in one part: one PUT, no upload to create and complete
                last = bytes(pending)
                await asyncio.gather(
                    asyncio.to_thread(digest.update, last),
                    s3.put_object(Bucket=self.bucket, Key=name, Body=last),
                )
            else:
                if pending:
                    last = bytes(pending)
                    parts.append(await self._put_part(s3, digest, name, upload_id, parts, last))
                await s3.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=name,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
        except BaseException:
            if upload_id is not None:
                # shielded: a cancelled save still aborts (else sweep does, much later)
                await asyncio.shield(self._abort(name, upload_id))
            raise
        return digest.saved(name)

    def _part_size(self, number: int) -> int:
        return self.part_size << ((number - 1) // _PARTS_PER_SIZE)

    async def _put_part(
        self,
        s3: S3Client,
        digest: Digest,
        name: str,
        upload_id: str,
        parts: list[CompletedPartTypeDef],
        part: bytes,
    ) -> CompletedPartTypeDef:
        """Upload the next part while a worker thread hashes it: the hashes cost no time the
        network would not take anyway, and none of the event loop's."""
        number = len(parts) + 1
        _, uploaded = await asyncio.gather(
            asyncio.to_thread(digest.update, part),
            s3.upload_part(
                Bucket=self.bucket, Key=name, UploadId=upload_id, PartNumber=number, Body=part
            ),
        )
        return {"ETag": uploaded["ETag"], "PartNumber": number}

    async def _abort(self, name: str, upload_id: str) -> None:
        """Abort an upload; a failure is logged, not raised (the save's own error matters
        more, and sweep aborts what is left)."""
        try:
            s3 = await self.client()
            await s3.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload_id)
        except ClientError as exc:
            if _code(exc) != "NoSuchUpload":
                log.warning("could not abort the upload of %s (%s): %s", name, upload_id, exc)
        except Exception as exc:
            log.warning("could not abort the upload of %s (%s): %s", name, upload_id, exc)

    async def size(self, location: str) -> int | None:
        s3 = await self.client()
        try:
            head = await s3.head_object(Bucket=self.bucket, Key=location)
        except ClientError as exc:
            if _status(exc) == 404:
                return None
            raise
        return head["ContentLength"]

    async def read(
        self, location: str, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """As the directory store reads: FileNotFoundError for no data, and nothing for a
        range past its end."""
        if end is not None and end <= start:
            return
        extra: dict[str, Any] = {}
        if start > 0 or end is not None:
            extra["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        s3 = await self.client()
        try:
            got = await s3.get_object(Bucket=self.bucket, Key=location, **extra)
        except ClientError as exc:
            if _status(exc) == 404:
                raise FileNotFoundError(f"no object {location!r} in {self.bucket}") from exc
            if _status(exc) == 416:
                return
            raise
        body = got["Body"]
        # ``async with`` releases the connection however the reader stops; what it returns
        # differs between aiobotocore 2 and 3, hence ``body`` itself below
        async with body:
            async for chunk in body.iter_chunks(_READ_CHUNK):
                yield chunk

    async def delete(self, location: str) -> None:
        s3 = await self.client()
        # S3 answers a delete of no object as one of an object: nothing to catch
        await s3.delete_object(Bucket=self.bucket, Key=location)

    async def sweep(self, older_than_s: float) -> list[str]:
        """Abort the uploads nothing has added to for ``older_than_s`` or more (a gateway
        that died mid-save began them); their keys. An upload's age is that of its last
        part, not of its start: an image that takes longer to upload than ``older_than_s``
        is still alive while parts arrive."""
        s3 = await self.client()
        cutoff = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=older_than_s)
        aborted = []
        async for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket):
            for upload in page.get("Uploads", []):
                key, upload_id = upload["Key"], upload["UploadId"]
                if upload["Initiated"] > cutoff:
                    continue
                if await self._last_part_at(s3, key, upload_id) > cutoff:
                    continue
                try:
                    await s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
                except ClientError as exc:
                    if _code(exc) == "NoSuchUpload":  # completed, or another gateway swept it
                        continue
                    raise
                aborted.append(key)
        return aborted

    async def _last_part_at(self, s3: S3Client, key: str, upload_id: str) -> datetime.datetime:
        """When the upload's latest part arrived (the epoch when it has none)."""
        latest = datetime.datetime.fromtimestamp(0, datetime.UTC)
        try:
            async for page in s3.get_paginator("list_parts").paginate(
                Bucket=self.bucket, Key=key, UploadId=upload_id
            ):
                for part in page.get("Parts", []):
                    latest = max(latest, part["LastModified"])
        except ClientError as exc:
            if _code(exc) != "NoSuchUpload":
                raise
        return latest


def _status(exc: ClientError) -> int | None:
    status: int | None = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status


def _code(exc: ClientError) -> str | None:
    code: str | None = exc.response.get("Error", {}).get("Code")
    return code


if TYPE_CHECKING:

    def _is_an_image_store(store: S3ImageData) -> ImageData:
        """mypy checks the store against the protocol here, where nothing else would."""
        return store
