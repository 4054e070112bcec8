"""Where the image service keeps images' data: a store the gateways write uploads into and
read downloads from, behind one interface so that the backend (a directory that several
gateways share, or an object store) is the operator's choice.

A save is all or nothing: the data becomes visible under its location only once it is whole,
so an interrupted upload leaves nothing a reader could take for the image. Saving computes
what Glance reports of the data (size, MD5 ``checksum``, SHA-512 ``os_hash_value``) while
the bytes stream through: no image is ever held in memory or read twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

#: the hash Glance reports as ``os_hash_algo`` (its default, ``hashing_algorithm``)
HASH_ALGO = "sha512"


class TooLarge(Exception):
    """The data ran past the most a save may take; nothing was kept."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the image data is larger than {limit} bytes")
        self.limit = limit


@dataclass(frozen=True)
class Saved:
    """What a save stored: where, and what the data was."""

    location: str
    size: int
    checksum: str
    os_hash_value: str
    os_hash_algo: str = HASH_ALGO


@dataclass
class Digest:
    """Size and hashes of data as it streams through."""

    size: int = 0
    _md5: hashlib._Hash = field(default_factory=lambda: hashlib.md5(usedforsecurity=False))
    _sha: hashlib._Hash = field(default_factory=lambda: hashlib.new(HASH_ALGO))

    def update(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self._md5.update(chunk)
        self._sha.update(chunk)

    def saved(self, location: str) -> Saved:
        return Saved(location, self.size, self._md5.hexdigest(), self._sha.hexdigest())


class ImageData(Protocol):
    """A backend of the image store."""

    async def save(
        self, name: str, chunks: AsyncIterable[bytes], *, limit: int | None = None
    ) -> Saved:
        """Store ``chunks`` whole under a location derived from ``name``, or nothing:
        ``TooLarge`` past ``limit`` bytes, or whatever reading ``chunks`` raised."""
        ...

    async def size(self, location: str) -> int | None:
        """The stored data's size; None when there is none."""
        ...

    def read(self, location: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The bytes ``start`` to ``end`` (exclusive; None: to the end) of stored data."""
        ...

    async def delete(self, location: str) -> None:
        """Remove stored data (nothing when there is none)."""
        ...

    async def sweep(self, older_than_s: float) -> list[str]:
        """Remove what uploads that stopped ``older_than_s`` ago left half-written (their
        gateway died); what was removed."""
        ...

    async def aclose(self) -> None:
        """Release the backend's connections (a later use opens them again)."""
        ...
