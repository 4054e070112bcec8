"""The image service as a compute agent reaches it: over HTTP, through the gateway, with URLs
signed by the message key (shared/image_urls.py) rather than a user's token. It downloads the
images servers boot from (compute_agent/image_cache.py keeps them) and the files their
metadata names, stores the images of servers the agent saves (createImage, createBackup), and
carries a resized server's disk to the host it goes to; no agent reads or writes the image
store itself then.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from compute_agent.virt.driver import DriverError
from shared import image_urls
from shared.image_urls import HostResource
from shared.sealing import Keyring

#: how long a signed URL the agent makes is good for: long enough for a big transfer to
#: start, which is all the gateway checks
URL_TTL_S = 300.0
_CHUNK = 1 << 20
_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120)
_OCTETS = {"Content-Type": "application/octet-stream"}


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

    def _url(self, resource: HostResource, key: object, method: str) -> str:
        return image_urls.signed_url(
            self.api_url, self.keyring, resource, key, URL_TTL_S, method=method
        )

    async def download(self, image_id: uuid.UUID, target: Path) -> str:
        """Stream the image's data into ``target``; the MD5 of what came."""
        return await self._get(self._url(HostResource.IMAGE, image_id, "GET"), target)

    async def download_file(self, name: str, target: Path) -> None:
        """A file of the image store an image's metadata names, into ``target``."""
        await self._get(self._url(HostResource.FILE, name, "GET"), target)

    async def upload(self, image_id: uuid.UUID, source: Path) -> StoredImage:
        """Store ``source`` as the data of the image a host is saving; where it went."""
        stored = await self._put(self._url(HostResource.IMAGE, image_id, "PUT"), source)
        try:
            return StoredImage(
                location=str(stored["location"]),
                size=int(stored["size"]),
                checksum=str(stored["checksum"]),
                os_hash_value=str(stored["os_hash_value"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DriverError(f"the image service's answer is not understood: {exc!r}") from exc

    async def send_disk(self, server_id: uuid.UUID, source: Path) -> None:
        """Hand a resized server's disk over (for the host it goes to)."""
        await self._put(self._url(HostResource.TRANSFER, server_id, "PUT"), source)

    async def receive_disk(self, server_id: uuid.UUID, target: Path) -> None:
        """The disk handed over for a resized server, into ``target``."""
        await self._get(self._url(HostResource.TRANSFER, server_id, "GET"), target)

    async def drop_disk(self, server_id: uuid.UUID) -> None:
        """The disk handed over is not needed any more (nothing when there is none)."""
        url = self._url(HostResource.TRANSFER, server_id, "DELETE")
        try:
            async with (
                aiohttp.ClientSession(timeout=_TIMEOUT) as session,
                session.delete(url) as answer,
            ):
                await _check(answer, 204)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DriverError(f"the image service cannot be reached: {exc!r}") from exc

    async def _get(self, url: str, target: Path) -> str:
        """Stream ``url`` into ``target``; the MD5 of what came. ``DriverError`` when the
        image service does not give it."""
        digest = hashlib.md5(usedforsecurity=False)
        try:
            async with (
                aiohttp.ClientSession(timeout=_TIMEOUT) as session,
                session.get(url) as answer,
            ):
                await _check(answer, 200)
                out = await asyncio.to_thread(target.open, "wb")
                with out:
                    async for chunk in answer.content.iter_chunked(_CHUNK):
                        digest.update(chunk)
                        await asyncio.to_thread(out.write, chunk)
                    await asyncio.to_thread(os.fsync, out.fileno())
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DriverError(f"the image service cannot be reached: {exc!r}") from exc
        return digest.hexdigest()

    async def _put(self, url: str, source: Path) -> dict[str, Any]:
        """Stream ``source`` to ``url``; its JSON answer (empty for 204)."""
        try:
            async with (
                aiohttp.ClientSession(timeout=_TIMEOUT) as session,
                session.put(url, data=_read(source), headers=_OCTETS) as answer,
            ):
                await _check(answer, 200, 204)
                if answer.status == 204:
                    return {}
                stored: dict[str, Any] = await answer.json()
                return stored
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DriverError(f"the image service cannot be reached: {exc!r}") from exc


async def _check(answer: aiohttp.ClientResponse, *expected: int) -> None:
    if answer.status not in expected:
        path = answer.url.path
        raise DriverError(
            f"the image service refused {answer.method} {path}: "
            f"{answer.status} {(await answer.text())[:200]}"
        )


async def _read(source: Path) -> AsyncIterator[bytes]:
    reader = await asyncio.to_thread(source.open, "rb")
    with reader:
        while chunk := await asyncio.to_thread(reader.read, _CHUNK):
            yield chunk
