"""The image service as a compute agent reaches it: over HTTP, through the gateway's image
API, with URLs signed by the message key (shared/image_urls.py) rather than a user's token.
It downloads the images servers boot from (compute_agent/image_cache.py keeps them) and stores
the images of servers the agent saves (createImage, createBackup); no agent reads or writes
the image store itself then.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from compute_agent.virt.driver import DriverError
from shared import image_urls
from shared.sealing import Keyring

#: how long a signed URL the agent makes is good for: long enough for a big image's transfer
#: to start, which is all the gateway checks
URL_TTL_S = 300.0
_CHUNK = 1 << 20
_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120)


@dataclass(frozen=True)
class StoredImage:
    """Where the image service put an image's data, and what the data is."""

    location: str
    size: int
    checksum: str
    os_hash_value: str


class ImageServiceClient:
    def __init__(self, api_url: str, keyring: Keyring) -> None:
        #: the gateway (``http://host:port``)
        self.api_url = api_url
        self.keyring = keyring

    def _url(self, image_id: uuid.UUID, method: str) -> str:
        return image_urls.signed_url(self.api_url, self.keyring, image_id, URL_TTL_S, method=method)

    async def download(self, image_id: uuid.UUID, target: Path) -> str:
        """Stream the image's data into ``target``; the MD5 of what came. ``DriverError``
        when the image service does not give it."""
        digest = hashlib.md5(usedforsecurity=False)
        try:
            async with (
                aiohttp.ClientSession(timeout=_TIMEOUT) as session,
                session.get(self._url(image_id, "GET")) as answer,
            ):
                await _check(answer, image_id, "downloaded")
                out = await asyncio.to_thread(target.open, "wb")
                with out:
                    async for chunk in answer.content.iter_chunked(_CHUNK):
                        digest.update(chunk)
                        await asyncio.to_thread(out.write, chunk)
                    await asyncio.to_thread(os.fsync, out.fileno())
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DriverError(f"image {image_id} cannot be downloaded: {exc!r}") from exc
        return digest.hexdigest()

    async def upload(self, image_id: uuid.UUID, source: Path) -> StoredImage:
        """Store ``source`` as the data of the image a host is saving; where it went."""
        try:
            async with (
                aiohttp.ClientSession(timeout=_TIMEOUT) as session,
                session.put(
                    self._url(image_id, "PUT"),
                    data=_read(source),
                    headers={"Content-Type": "application/octet-stream"},
                ) as answer,
            ):
                await _check(answer, image_id, "stored")
                stored = await answer.json()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DriverError(f"image {image_id} cannot be stored: {exc!r}") from exc
        return StoredImage(
            location=stored["location"],
            size=stored["size"],
            checksum=stored["checksum"],
            os_hash_value=stored["os_hash_value"],
        )


async def _check(answer: aiohttp.ClientResponse, image_id: uuid.UUID, what: str) -> None:
    if answer.status != 200:
        raise DriverError(
            f"image {image_id} cannot be {what} by the image service: "
            f"{answer.status} {(await answer.text())[:200]}"
        )


async def _read(source: Path) -> AsyncIterator[bytes]:
    reader = await asyncio.to_thread(source.open, "rb")
    with reader:
        while chunk := await asyncio.to_thread(reader.read, _CHUNK):
            yield chunk
