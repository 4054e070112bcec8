"""Where a server's disk comes from: the image store, its images' files, and how an image boots.

Where agents download images from the image API (STRATUS_IMAGE_API_URL), a server's root disk
is an overlay on the host's cached copy (compute_agent/image_cache.py); otherwise, as below,
on the image's file in the shared image store. The image store (STRATUS_IMAGE_STORE_DIR)
holds every image's file; the image row's
``location`` names it, relative to the store, and ``disk_format`` says what it is (qcow2 or
raw: the format is never probed, so a raw image whose content looks like a qcow2 header
cannot make QEMU open another file). A server's root disk is a qcow2 overlay whose backing
file is the image's file *in the store*, read in place, never copied and never written: every
agent must read the store at the same path. On one machine the store is a directory; hosts of
their own must mount one shared file system (NFS...) at the same path, and an image's file must
not change or go while servers use it.

How an image boots (the convention the image's metadata carries): from its disk (its boot
loader), unless its metadata names a kernel:

``kernel``
    a file in the image store (relative to it), booted directly (``<kernel>``);
``initrd``
    optional: the initramfs loaded with it (``<initrd>``);
``cmdline``
    optional: the kernel's command line (``<cmdline>``).

Users may edit their own images' metadata, so a kernel or initrd must be a file inside the
store and must not be a qcow2 image: metadata can never make a host file, or another
project's disk image, the kernel or initrd of a server. Images made of a server (createImage,
createBackup) inherit these keys from the server's image (conductor/snapshots.py).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from compute_agent.virt.driver import DriverError
from shared.messages import ImageSpec

#: the image formats a root disk can be an overlay on
BASE_FORMATS = frozenset({"qcow2", "raw"})

#: the metadata keys of an image booted from a kernel of its own
KERNEL_KEY, INITRD_KEY, CMDLINE_KEY = "kernel", "initrd", "cmdline"

_QCOW_MAGIC = b"QFI\xfb"


@dataclass(frozen=True)
class BaseImage:
    """The file a root disk's overlay reads from, and its format."""

    path: Path
    format: str


@dataclass(frozen=True)
class BootFiles:
    """A kernel booted directly, with its initramfs and command line."""

    kernel: Path
    initrd: Path | None = None
    cmdline: str | None = None


class RemoteImages(Protocol):
    """What a host gets from the image service instead of a shared image store (the
    driver's: compute_agent/virt/libvirt/remote_images.py). Called from the worker threads
    disk work runs in; each call waits for its transfer."""

    def base(self, image: ImageSpec) -> Path:
        """The host's copy of ``image``, downloaded first if need be."""
        ...

    def file(self, name: str) -> Path:
        """The host's copy of a file of the store (a kernel an image names)."""
        ...

    def send_disk(self, server_id: uuid.UUID, disk: Path) -> None:
        """Hand a resized server's disk over, for the host it goes to."""
        ...

    def receive_disk(self, server_id: uuid.UUID, target: Path) -> None:
        """The disk handed over for a resized server, into ``target``."""
        ...

    def drop_disk(self, server_id: uuid.UUID) -> None:
        """The disk handed over is not needed any more."""
        ...


class ImageStore:
    """The image store as an agent reads it (and writes images of servers into); with
    ``remote``, the host reaches nothing of the store itself: bases and files come from its
    own copies of the image service's (compute_agent/image_cache.py), and a resize hands a
    disk over through the image service."""

    def __init__(self, root: Path, remote: RemoteImages | None = None) -> None:
        self.root = root
        self.remote = remote

    def base(self, image: ImageSpec) -> BaseImage:
        """The file and format of ``image``; ``DriverError`` when it has none usable."""
        if not image.location:
            raise DriverError(f"image {image.id} has no file in the image store to boot from")
        if image.disk_format not in BASE_FORMATS:
            raise DriverError(
                f"image {image.id} is {image.disk_format}: servers boot from "
                f"{' or '.join(sorted(BASE_FORMATS))} images"
            )
        if self.remote is not None:
            return BaseImage(self.remote.base(image), image.disk_format)
        path = self._inside(image.location, f"the file of image {image.id}")
        return BaseImage(path, image.disk_format)

    def boot_files(self, image: ImageSpec) -> BootFiles | None:
        """The kernel ``image`` boots directly, if its metadata names one (see above)."""
        props = image.properties
        if not props.get(KERNEL_KEY):
            return None
        initrd = props.get(INITRD_KEY)
        return BootFiles(
            kernel=self._boot_file(props[KERNEL_KEY], "kernel", image),
            initrd=self._boot_file(initrd, "initrd", image) if initrd else None,
            cmdline=props.get(CMDLINE_KEY) or None,
        )

    def transfer(self, server_id: uuid.UUID) -> Path:
        """Where a resize hands a server's disk over to another host."""
        return self.root / "transfers" / str(server_id) / "disk"

    def _boot_file(self, name: str, key: str, image: ImageSpec) -> Path:
        what = f"the {key} of image {image.id}"
        path = self._inside(name, what) if self.remote is None else self._fetched(name, what)
        with path.open("rb") as head:
            if head.read(len(_QCOW_MAGIC)) == _QCOW_MAGIC:
                raise DriverError(f"the {key} of image {image.id} ({name}) is a disk image")
        return path

    def _fetched(self, name: str, what: str) -> Path:
        """The host's copy of a store file an image names: only a plain file name (the
        image service refuses anything else too)."""
        if "/" in name or name.startswith("."):
            raise DriverError(f"{what} ({name}) is not in the image store")
        assert self.remote is not None
        return self.remote.file(name)

    def _inside(self, relative: str, what: str) -> Path:
        """``relative`` resolved in the store: a regular file there, or ``DriverError``."""
        root = self.root.resolve()
        path = (root / relative).resolve()
        if not path.is_relative_to(root) or path == root:
            raise DriverError(f"{what} ({relative}) is not in the image store")
        if not path.is_file():
            raise DriverError(f"{what} ({relative}) is missing from the image store {root}")
        return path
