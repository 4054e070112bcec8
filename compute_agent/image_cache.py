"""The images a host's servers boot from, downloaded from the image API and kept on the host
(nova's ``_base`` directory): no host reads the image service's store (docs/architecture.md,
"Images on hosts").

An image is fetched from the image service (compute_agent/image_service.py) the first time a
server of this host needs it, checked against the MD5 the image service computed (a mismatch
keeps nothing), written to a temporary name and renamed, so a half-fetched image is never
taken for one. Servers' disks are overlays on the cached file. Builds of one image on one host
at once download it once: the second waits for the first. A cached image no disk of this host
uses any more is removed once it has not been used for ``max_age_s`` (nova's
``remove_unused_original_minimum_age_seconds``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

from compute_agent.disk_full import writing
from compute_agent.image_service import ImageServiceClient
from compute_agent.virt.driver import DriverError
from shared.messages import ImageSpec

log = logging.getLogger(__name__)

#: the prefix of a download under way
_PARTIAL = ".fetch-"


class ImageCache:
    """A host's cache of images, under ``root`` (``<data dir>/_base``)."""

    def __init__(self, root: Path, images: ImageServiceClient) -> None:
        self.root = root
        #: where the images come from (the gateway's image API)
        self.images = images
        self._locks: dict[uuid.UUID | str, asyncio.Lock] = {}

    def path(self, image_id: uuid.UUID) -> Path:
        return self.root / str(image_id)

    async def ensure(self, image: ImageSpec) -> Path:
        """The cached file of ``image``, fetched now if this host has none; ``DriverError``
        when it cannot be had (gone, no data, a download that does not check out)."""

        async def download(partial: Path) -> None:
            digest = await self.images.download(image.id, partial)
            if image.checksum is not None and digest != image.checksum:
                raise DriverError(
                    f"image {image.id} downloaded with MD5 {digest}, not the image "
                    f"service's {image.checksum}: not kept"
                )

        return await self._ensure(image.id, self.path(image.id), download)

    async def ensure_file(self, name: str) -> Path:
        """The host's copy of a file of the image store an image's metadata names (a
        kernel, an initrd), fetched now if this host has none (``file-<name>``)."""

        async def download(partial: Path) -> None:
            await self.images.download_file(name, partial)

        return await self._ensure(name, self.root / f"file-{name}", download)

    async def _ensure(
        self,
        key: uuid.UUID | str,
        path: Path,
        download: Callable[[Path], Awaitable[None]],
    ) -> Path:
        """``path``, marked used, or made now by ``download`` into a temporary file renamed
        once it returned (it raises to keep nothing); one download at a time per ``key``.

        A download that fills the disk is ``DiskFull`` naming this cache's directory, and
        leaves nothing: half an image kept under its name would be trusted by every later
        build on this host."""
        async with self._locks.setdefault(key, asyncio.Lock()):
            if await asyncio.to_thread(_touch, path):
                return path
            partial = self.root / f"{_PARTIAL}{uuid.uuid4().hex}"
            started = time.monotonic()
            try:
                with writing(self.root):
                    await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)
                    await download(partial)
                    await asyncio.to_thread(os.replace, partial, path)
            finally:
                await asyncio.to_thread(partial.unlink, missing_ok=True)
            log.info("%s cached in %.1f s", path.name, time.monotonic() - started)
            return path

    async def sweep(self, in_use: Iterable[Path], max_age_s: float) -> list[str]:
        """Remove the cached images no disk uses (``in_use``: the files disks are overlays
        on) that were last used ``max_age_s`` ago or more, and downloads that stopped as
        long ago; their names."""
        used = {p.resolve() for p in in_use}
        return await asyncio.to_thread(_sweep, self.root, used, max_age_s)


def _touch(path: Path) -> bool:
    """Mark a cached image used now; False when there is none."""
    try:
        os.utime(path)
    except FileNotFoundError:
        return False
    return True


def _sweep(root: Path, used: set[Path], max_age_s: float) -> list[str]:
    if not root.is_dir():
        return []
    cutoff = time.time() - max_age_s
    removed = []
    for path in root.iterdir():
        with contextlib.suppress(FileNotFoundError):
            if path.resolve() in used or path.stat().st_mtime >= cutoff:
                continue
            path.unlink()
            removed.append(path.name)
    return removed
