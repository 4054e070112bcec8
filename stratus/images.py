"""Base images from files: ``stratus image import``, ``stratus image import-guest``, and the
built guest ``stratus up`` registers.

An image a real hypervisor can boot is data in the image store and a row in ``images`` whose
``location`` names that data, exactly as the image API's uploads and agents' snapshots record
theirs. Importing saves the file through the same store interface an upload goes through
(shared/image_data: whole or not at all, with its checksum and hash), whatever backend the
operator configured, and records the row after, so a row never names data that is not there.
deploy/guest/README.md describes the convention the libvirt driver relies on, and the guest
``deploy/guest/build.sh`` builds. Only this operator's tool makes base images (the API never
does); their rows are ``shared/db/images.py``'s.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import struct
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import platformdirs

from shared.config import Settings
from shared.db import images, seed
from shared.db.pool import Conn
from shared.image_data import ImageData, Saved
from shared.image_data.configured import open_image_data

log = logging.getLogger(__name__)

#: the disk formats an image may be imported in (what the libvirt driver overlays)
DISK_FORMATS = ("qcow2", "raw")

_QCOW2_MAGIC = b"QFI\xfb"

#: image metadata keys of a direct kernel boot (files relative to the image store)
KERNEL_KEY, INITRD_KEY, CMDLINE_KEY = "kernel", "initrd", "cmdline"

#: told (file name, bytes copied, bytes in all) as a copy goes on (stratus/progress.py)
Progress = Callable[[str, int, int], None]

_CHUNK = 1 << 20


class ImageImportError(Exception):
    """The file cannot be imported as asked; the message says why."""


@dataclass(frozen=True)
class ImageFile:
    """A file to import as a base image, and what its row says of it."""

    name: str
    path: Path
    disk_format: str = "qcow2"
    min_disk_gb: int = 0
    min_ram_mb: int = 0
    metadata: Mapping[str, str] = field(default_factory=dict)
    #: for a direct kernel boot: the kernel and initramfs go into the store next to the disk
    kernel: Path | None = None
    initrd: Path | None = None
    cmdline: str | None = None


@dataclass(frozen=True)
class Imported:
    id: uuid.UUID
    name: str
    location: str
    size_bytes: int
    #: False when the image was registered already (nothing was copied or written)
    created: bool


# --- the file --------------------------------------------------------------------------------


def check_format(path: Path, disk_format: str) -> None:
    """Refuse a file that is not what ``disk_format`` says, or a qcow2 that needs a backing
    file: a base image in the store must stand alone (servers' disks are overlays on it)."""
    if disk_format not in DISK_FORMATS:
        raise ImageImportError(f"disk format {disk_format!r} is not one of {DISK_FORMATS}")
    try:
        with path.open("rb") as file:
            header = file.read(20)
    except OSError as exc:
        raise ImageImportError(f"cannot read {path}: {exc.strerror}") from exc
    is_qcow2 = header[:4] == _QCOW2_MAGIC
    if disk_format == "raw" and is_qcow2:
        raise ImageImportError(f"{path} is a qcow2 image, not raw")
    if disk_format == "qcow2":
        if not is_qcow2 or len(header) < 20:
            raise ImageImportError(f"{path} is not a qcow2 image")
        (backing_offset,) = struct.unpack(">Q", header[8:16])
        if backing_offset:
            raise ImageImportError(
                f"{path} has a backing file: convert it to a standalone image first "
                "(qemu-img convert -O qcow2)"
            )


async def _boot_files(
    image: ImageFile, image_id: uuid.UUID, store: ImageData, progress: Progress | None
) -> dict[str, str]:
    """Save a direct kernel boot's files into the store; the metadata that names them."""
    if image.kernel is None:
        if image.initrd is not None or image.cmdline is not None:
            raise ImageImportError("an initrd or a kernel command line needs a kernel")
        return {}
    metadata = {KERNEL_KEY: f"{image_id}.kernel"}
    await save_file(image.kernel, store, metadata[KERNEL_KEY], progress)
    if image.initrd is not None:
        metadata[INITRD_KEY] = f"{image_id}.initrd"
        await save_file(image.initrd, store, metadata[INITRD_KEY], progress)
    if image.cmdline is not None:
        metadata[CMDLINE_KEY] = image.cmdline
    return metadata


# --- the row ---------------------------------------------------------------------------------


async def import_image(
    conn: Conn,
    store: ImageData,
    image: ImageFile,
    *,
    image_id: uuid.UUID | None = None,
    owner: str | None = None,
    progress: Progress | None = None,
) -> Imported:
    """Import ``image`` as ``image_id`` (default: a new id): public, or private to ``owner``.
    An image of that id that exists already is left as it is (``created`` False).
    ``progress`` hears how each file's copy into the store goes."""
    image_id = image_id or uuid.uuid4()
    existing = await images.get_live(conn, image_id)
    if existing is not None:
        location, size = existing.location or "", existing.size_bytes or 0
        return Imported(image_id, existing.name, location, size, created=False)
    check_format(image.path, image.disk_format)
    location = f"{image_id}.{image.disk_format}"
    metadata = {**image.metadata, **(await _boot_files(image, image_id, store, progress))}
    saved = await save_file(image.path, store, location, progress)
    await images.insert_base(
        conn,
        images.NewBaseImage(
            id=image_id,
            name=image.name,
            owner=owner,
            min_disk_gb=image.min_disk_gb,
            min_ram_mb=image.min_ram_mb,
            disk_format=image.disk_format,
            location=location,
            size_bytes=saved.size,
            metadata=metadata,
            checksum=saved.checksum,
            os_hash_value=saved.os_hash_value,
        ),
    )
    log.info("image %s (%s) imported as %s", image_id, image.name, location)
    return Imported(image_id, image.name, location, saved.size, created=True)


async def save_file(
    source: Path, store: ImageData, location: str, progress: Progress | None = None
) -> Saved:
    """A file into the store as the image API's uploads go: whole or not at all (a file
    already under ``location`` is replaced), with the checksum and hash the image service
    shows."""
    try:
        return await store.save(location, _read(source, progress))
    except OSError as exc:
        raise ImageImportError(f"cannot save {source} into the image store: {exc}") from exc


async def _read(source: Path, progress: Progress | None) -> AsyncIterator[bytes]:
    """The file's bytes in chunks, telling ``progress`` after each: disk images are
    gigabytes."""
    reader = await asyncio.to_thread(source.open, "rb")
    with reader:
        total = os.fstat(reader.fileno()).st_size
        done = 0
        if progress is not None:
            progress(source.name, done, total)
        while chunk := await asyncio.to_thread(reader.read, _CHUNK):
            done += len(chunk)
            if progress is not None:
                progress(source.name, done, total)
            yield chunk


# --- the guest deploy/guest/build.sh builds ------------------------------------------------


def guest_cache() -> Path:
    """Where deploy/guest/build.sh keeps the guests it built (STRATUS_GUEST_CACHE, as the
    script reads it)."""
    configured = os.environ.get("STRATUS_GUEST_CACHE")
    if configured:
        return Path(configured)
    return platformdirs.user_cache_path("stratus", appauthor=False) / "guest"


def built_guest(cache: Path | None = None) -> Path | None:
    """The directory of the guest built last (``current``), if there is a complete one."""
    current = (cache or guest_cache()) / "current"
    return current.resolve() if (current / "manifest.json").is_file() else None


@dataclass(frozen=True)
class Guest:
    """A built guest, as its ``manifest.json`` describes it."""

    directory: Path
    name: str
    disk: Path
    disk_format: str
    min_ram_mb: int
    min_disk_gb: int
    login_prompt: str

    @property
    def image_id(self) -> uuid.UUID:
        """Stable: the same guest build is the same image wherever it is imported."""
        return seed.image_id(self.name)


def read_guest(directory: Path) -> Guest:
    try:
        manifest = json.loads((directory / "manifest.json").read_text())
        return Guest(
            directory=directory,
            name=str(manifest["name"]),
            disk=directory / str(manifest["disk"]),
            disk_format=str(manifest["disk_format"]),
            min_ram_mb=int(manifest["min_ram_mb"]),
            min_disk_gb=int(manifest["min_disk_gb"]),
            login_prompt=str(manifest["login_prompt"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ImageImportError(f"{directory} holds no built guest: {exc}") from exc


async def import_guest(
    conn: Conn, store: ImageData, guest: Guest, progress: Progress | None = None
) -> Imported:
    """Register ``guest`` (public, booting from its disk); again changes nothing."""
    return await import_image(
        conn,
        store,
        ImageFile(
            name=guest.name,
            path=guest.disk,
            disk_format=guest.disk_format,
            min_disk_gb=guest.min_disk_gb,
            min_ram_mb=guest.min_ram_mb,
            metadata={"stratus_guest": "deploy/guest"},
        ),
        image_id=guest.image_id,
        progress=progress,
    )


async def register_built_guest(database_url: str, settings: Settings) -> Imported | None:
    """What ``stratus up`` does at start: register the guest deploy/guest/build.sh built, if
    there is one, so that a real hypervisor has something to boot. A guest that cannot be
    registered is reported and skipped: the system runs without it."""
    directory = built_guest()
    if directory is None:
        return None
    conn: asyncpg.Connection = await asyncpg.connect(database_url)
    store = open_image_data(settings)
    try:
        return await import_guest(conn, store, read_guest(directory))
    except ImageImportError as exc:
        log.warning("the built guest in %s is not registered: %s", directory, exc)
        return None
    finally:
        await conn.close()
        await store.aclose()
