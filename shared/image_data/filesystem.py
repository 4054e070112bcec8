"""The image store in a directory (the default: ``<data dir>/images``, STRATUS_IMAGE_STORE_DIR).

A location is a file name in the directory, as the rows of ``images`` have always named
them (``<image id>.<disk format>``), so images imported by ``stratus image import`` and
snapshots written by agents live beside uploads. A save writes to a hidden temporary file
and renames it over the location once complete and flushed: a reader never sees part of an
image, and a crash leaves only a temporary file (``.upload-*``), never a location.
File I/O runs in a worker thread, so a gateway keeps answering while a disk is slow.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import BinaryIO

from shared.image_data import Digest, Saved, TooLarge

#: how much is read from disk at a time for a download, and written at a time for an upload
_READ_CHUNK = _WRITE_BLOCK = 1 << 20
#: the prefix of data being written, not yet an image's
TEMPORARY_PREFIX = ".upload-"


class DirectoryImageData:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, location: str) -> Path:
        """The file of a location; one that would leave the directory is no location."""
        path = self.root / location
        if path.parent != self.root or location.startswith("."):
            raise ValueError(f"not a location of this store: {location!r}")
        return path

    async def save(
        self, name: str, chunks: AsyncIterable[bytes], *, limit: int | None = None
    ) -> Saved:
        target = self._path(name)
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)
        temporary = self.root / f"{TEMPORARY_PREFIX}{uuid.uuid4().hex}"
        digest = Digest()
        out = await asyncio.to_thread(temporary.open, "wb")
        try:
            async for block in _blocks(chunks):
                if limit is not None and digest.size + len(block) > limit:
                    raise TooLarge(limit)
                await asyncio.to_thread(_hash_and_write, digest, out, block)
            await asyncio.to_thread(_flush, out)
            await asyncio.to_thread(os.replace, temporary, target)
        except BaseException:
            await asyncio.to_thread(_discard, out, temporary)
            raise
        finally:
            out.close()
        return digest.saved(name)

    async def size(self, location: str) -> int | None:
        try:
            return (await asyncio.to_thread(self._path(location).stat)).st_size
        except FileNotFoundError:
            return None

    async def read(
        self, location: str, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        handle = await asyncio.to_thread(self._path(location).open, "rb")
        try:
            await asyncio.to_thread(handle.seek, start)
            left = None if end is None else end - start
            while left is None or left > 0:
                size = _READ_CHUNK if left is None else min(_READ_CHUNK, left)
                chunk = await asyncio.to_thread(handle.read, size)
                if not chunk:
                    return
                if left is not None:
                    left -= len(chunk)
                yield chunk
        finally:
            handle.close()

    async def sweep(self, older_than_s: float) -> list[str]:
        """Remove the temporary files of uploads that stopped ``older_than_s`` ago or more
        (their gateway died mid-upload: nothing will ever rename them); their names."""
        return await asyncio.to_thread(_sweep, self.root, older_than_s)

    async def delete(self, location: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(self._path(location).unlink)

    async def aclose(self) -> None:
        """A directory holds no connection to release."""


async def _blocks(chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """``chunks`` joined into blocks of about ``_WRITE_BLOCK``: one worker-thread hop per
    block, not per network read, and the hashing done there too, off the event loop."""
    pending = bytearray()
    async for chunk in chunks:
        pending += chunk
        if len(pending) >= _WRITE_BLOCK:
            yield bytes(pending)
            pending.clear()
    if pending:
        yield bytes(pending)


def _hash_and_write(digest: Digest, out: BinaryIO, block: bytes) -> None:
    digest.update(block)
    out.write(block)


def _flush(out: BinaryIO) -> None:
    out.flush()
    os.fsync(out.fileno())


def _discard(out: BinaryIO, temporary: Path) -> None:
    out.close()
    temporary.unlink(missing_ok=True)


def _sweep(root: Path, older_than_s: float) -> list[str]:
    if not root.is_dir():
        return []
    cutoff = time.time() - older_than_s
    removed = []
    for path in root.glob(f"{TEMPORARY_PREFIX}*"):
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed.append(path.name)
    return removed
