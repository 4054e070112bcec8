"""A server's files on its host, and the disk work on them (qemu-img).

Layout, for the server ``<id>`` on a host::

    <instances dir>/<id>/disk            root disk: qcow2 overlay on its image's file in the
                                         image store (images.py), grown to the flavor's size
    <instances dir>/<id>/console.log     its serial console
    <instances dir>/<id>/.arriving       while a block live migration brings it here
    <instances dir>/<id>_resize/         the original, while a resize awaits confirmation
    <instances dir>/<id>_resize/.host    ... and the host whose original it is
    <image store>/transfers/<id>/disk    a resized server's disk on its way to another host

Every step can run twice: a file appears whole or not at all (written aside, then renamed),
and what is already done is not done again. Nothing here ever writes an image's file in the
store. A file that another host may be using (an instances directory shared between hosts, a
destination's copy) is removed only by the host that owns it (the ``.host`` and
``.arriving`` marks).

libvirt's test hypervisor reads no files: its driver uses ``NoDisks``, which makes none; the
one file such a server has is the console log its driver writes (console_log.py).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import struct
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from compute_agent import config_drive
from compute_agent.disk_full import writing
from compute_agent.virt.driver import DriverError
from compute_agent.virt.libvirt.images import ImageStore
from shared.messages import InstanceSpec

log = logging.getLogger(__name__)

GIB = 1024**3

#: how long one qemu-img run may take (a flatten of a big disk is the longest)
QEMU_IMG_TIMEOUT_S = 3600.0


# --- qemu-img ------------------------------------------------------------------------------------


def qemu_img(*args: str) -> str:
    """Run ``qemu-img`` with ``args``; its output, or ``DriverError`` with its complaint."""
    try:
        done = subprocess.run(
            ["qemu-img", *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=QEMU_IMG_TIMEOUT_S,
        )
    except FileNotFoundError as exc:
        raise DriverError("qemu-img is not installed on this host (package qemu-utils)") from exc
    except subprocess.CalledProcessError as exc:
        raise DriverError(f"qemu-img {args[0]} failed: {exc.stderr.strip()}") from exc
    except subprocess.TimeoutExpired as exc:
        raise DriverError(f"qemu-img {args[0]} took longer than {exc.timeout:.0f} s") from exc
    return done.stdout


def virtual_size(path: Path, fmt: str = "qcow2") -> int:
    """The size the guest sees of the disk at ``path`` (read even while a guest uses it)."""
    info = json.loads(qemu_img("info", "--output=json", "-U", "-f", fmt, str(path)))
    return int(info["virtual-size"])


def _partial(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial")


def _publish(partial: Path, path: Path) -> None:
    """The file written aside becomes ``path`` in one step."""
    os.replace(partial, path)


def backing_file(path: Path) -> Path | None:
    """The backing file a qcow2 image names in its header (None: none, or no qcow2): read
    from the header itself, as qemu-img would, without running it for every disk."""
    try:
        with path.open("rb") as image:
            header = image.read(20)
            if len(header) < 20 or header[:4] != b"QFI\xfb":
                return None
            offset, size = struct.unpack(">QI", header[8:20])
            if not offset or not size:
                return None
            image.seek(offset)
            name = image.read(size).decode(errors="replace")
    except OSError:
        return None
    backing = Path(name)
    return backing if backing.is_absolute() else path.parent / backing


def backing_files(instances_dir: Path) -> set[Path]:
    """Every backing file the disks under ``instances_dir`` name: what servers use."""
    if not instances_dir.is_dir():
        return set()
    found = (backing_file(p) for p in instances_dir.rglob("*") if p.is_file())
    return {p for p in found if p is not None}


def create_overlay(path: Path, backing: Path, backing_format: str) -> None:
    """A qcow2 overlay at ``path`` reading from ``backing``; nothing if it is there."""
    if path.exists():
        return
    partial = _partial(path)
    partial.unlink(missing_ok=True)
    try:
        qemu_img(
            "create", "-q", "-f", "qcow2", "-F", backing_format, "-b", str(backing), str(partial)
        )
        _publish(partial, path)
    finally:
        partial.unlink(missing_ok=True)  # what a failed run left (qemu-img may leave some)


def grow(path: Path, size_bytes: int) -> None:
    """Make the qcow2 disk at ``path`` at least ``size_bytes`` big (never smaller: that would
    cut the guest's file systems); only while no guest uses it."""
    if size_bytes > virtual_size(path):
        qemu_img("resize", "-q", "-f", "qcow2", str(path), str(size_bytes))


def flatten(source: Path, dest: Path, fmt: str = "qcow2") -> None:
    """A standalone image at ``dest`` (no backing file) of what the guest sees on the disk
    ``source``, its backing chain included; nothing if ``dest`` is there."""
    if dest.exists():
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = _partial(dest)
    partial.unlink(missing_ok=True)
    try:
        qemu_img("convert", "-U", "-f", "qcow2", "-O", fmt, str(source), str(partial))
        _publish(partial, dest)
    finally:
        partial.unlink(missing_ok=True)


def copy(source: Path, dest: Path) -> None:
    """A copy of the disk file ``source`` (an overlay stays one: same backing file) at
    ``dest``, holes kept; nothing if ``dest`` is there."""
    if dest.exists():
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = _partial(dest)
    try:
        subprocess.run(
            ["cp", "--sparse=always", str(source), str(partial)],
            check=True,
            capture_output=True,
            text=True,
        )
        _publish(partial, dest)
    except subprocess.CalledProcessError as exc:
        raise DriverError(f"could not copy {source}: {exc.stderr.strip()}") from exc
    finally:
        partial.unlink(missing_ok=True)


def supports_direct_io(directory: Path) -> bool:
    """Can files in ``directory`` be opened with O_DIRECT (``cache='none'``)? tmpfs cannot."""
    probe = directory / f".direct-io-{uuid.uuid4().hex}"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_WRONLY | getattr(os, "O_DIRECT", 0), 0o600)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            return False
        raise
    os.close(fd)
    probe.unlink(missing_ok=True)
    return True


# --- a server's files ---------------------------------------------------------------------------


@dataclass(frozen=True)
class InstanceFiles:
    """The paths of one server's files on a host (see the layout above)."""

    instances_dir: Path
    server_id: uuid.UUID

    @property
    def dir(self) -> Path:
        return self.instances_dir / str(self.server_id)

    @property
    def disk(self) -> Path:
        return self.dir / "disk"

    @property
    def console(self) -> Path:
        return self.dir / "console.log"

    @property
    def config_drive(self) -> Path:
        return self.dir / config_drive.FILE_NAME

    @property
    def arriving(self) -> Path:
        return self.dir / ".arriving"

    @property
    def resize_dir(self) -> Path:
        return self.instances_dir / f"{self.server_id}_resize"

    @property
    def resize_disk(self) -> Path:
        return self.resize_dir / "disk"

    @property
    def resize_owner(self) -> Path:
        return self.resize_dir / ".host"


def root_size(instance: InstanceSpec) -> int:
    """The size the flavor gives the root disk (0: the image's own size)."""
    return instance.flavor.disk_gb * GIB


class Disks(Protocol):
    """What the libvirt driver asks of a host's disks."""

    def files(self, server_id: uuid.UUID) -> InstanceFiles: ...

    def cache_mode(self) -> str:
        """The disk cache mode domains of this host use."""

    def ensure_root(self, instance: InstanceSpec) -> None:
        """The server's directory and root disk (an overlay on its image), grown to its
        flavor; what is there already is kept."""

    def replace_root(self, instance: InstanceSpec) -> None:
        """A fresh root disk on ``instance.image`` in place of the old one (rebuild)."""

    def remove(self, server_id: uuid.UUID) -> None:
        """Every file of the server on this host (not what another host owns)."""

    def stash_original(self, server_id: uuid.UUID, *, hand_over: bool) -> Path:
        """Resize, source: keep the original aside (``<id>_resize``) and, with ``hand_over``,
        put a copy of its disk in the image store for the destination; returns where the
        original's disk now is."""

    def take_over(self, instance: InstanceSpec, *, same_host: bool) -> None:
        """Resize, destination: the server's disk here (a copy of the original's, from this
        host or from the image store), grown to the new flavor."""

    def restore_original(self, server_id: uuid.UUID) -> None:
        """Resize reverted (or rolled back), source: the original's files are the server's
        again; nothing if they are already."""

    def discard_original(self, server_id: uuid.UUID) -> None:
        """Resize confirmed, source: the original's files go."""

    def prepare_arrival(self, instance: InstanceSpec, *, block_migration: bool) -> None:
        """Live migration, destination: for a block migration, the directory and an empty
        root disk of the same size for the hypervisor to copy into (marked as arriving);
        without one, a check that the server's disk is here (on shared storage)."""

    def arrived(self, server_id: uuid.UUID) -> None:
        """Live migration, destination: the server runs here; its files are its own."""

    def discard_arrival(self, server_id: uuid.UUID) -> None:
        """Live migration failed, destination: remove what ``prepare_arrival`` made (only
        what it made)."""


class NoDisks:
    """libvirt's test hypervisor reads no files: nothing is made, and only the console log
    the driver writes for its guest is removed."""

    def __init__(self, instances_dir: Path) -> None:
        self.instances_dir = instances_dir

    def files(self, server_id: uuid.UUID) -> InstanceFiles:
        return InstanceFiles(self.instances_dir, server_id)

    def cache_mode(self) -> str:
        return "none"

    def ensure_root(self, instance: InstanceSpec) -> None:
        """The test hypervisor boots without a disk."""

    def replace_root(self, instance: InstanceSpec) -> None:
        """The test hypervisor boots without a disk."""

    def remove(self, server_id: uuid.UUID) -> None:
        """The console log and config drive the driver wrote, and their directory once
        empty."""
        files = self.files(server_id)
        files.console.unlink(missing_ok=True)
        files.config_drive.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # absent, or holding what is not ours
            files.dir.rmdir()

    def stash_original(self, server_id: uuid.UUID, *, hand_over: bool) -> Path:
        return self.files(server_id).disk

    def take_over(self, instance: InstanceSpec, *, same_host: bool) -> None:
        """No disk moves."""

    def restore_original(self, server_id: uuid.UUID) -> None:
        """No file was set aside."""

    def discard_original(self, server_id: uuid.UUID) -> None:
        """No file was set aside."""

    def prepare_arrival(self, instance: InstanceSpec, *, block_migration: bool) -> None:
        """No disk is copied."""

    def arrived(self, server_id: uuid.UUID) -> None:
        """No file marks an arrival."""

    def discard_arrival(self, server_id: uuid.UUID) -> None:
        """No file was made."""


class LocalDisks:
    """The disks of a real host: files in its instances directory, overlays on the store."""

    def __init__(self, instances_dir: Path, store: ImageStore | None, host: str) -> None:
        self.instances_dir = instances_dir
        self.store = store
        self.host = host
        self._cache: str | None = None

    def files(self, server_id: uuid.UUID) -> InstanceFiles:
        return InstanceFiles(self.instances_dir, server_id)

    def cache_mode(self) -> str:
        """``none`` (the host's page cache bypassed, as live migration wants) where the file
        system allows O_DIRECT, else ``writeback``."""
        if self._cache is None:
            self.instances_dir.mkdir(parents=True, exist_ok=True)
            self._cache = "none" if supports_direct_io(self.instances_dir) else "writeback"
        return self._cache

    def _store(self) -> ImageStore:
        if self.store is None:
            raise DriverError(f"host {self.host} has no image store to boot servers from")
        return self.store

    def ensure_root(self, instance: InstanceSpec) -> None:
        """(See ``Disks``.) An instances directory too full for the disk is ``DiskFull``
        naming it; one for the image's copy (``_base``) names that one."""
        files = self.files(instance.server_id)
        with writing(self.instances_dir, self.host):
            files.dir.mkdir(parents=True, exist_ok=True)
            if not files.disk.exists():
                base = self._store().base(instance.image)
                create_overlay(files.disk, base.path, base.format)
            grow(files.disk, root_size(instance))

    def replace_root(self, instance: InstanceSpec) -> None:
        files = self.files(instance.server_id)
        with writing(self.instances_dir, self.host):
            base = self._store().base(instance.image)  # refuse before anything is lost
            files.disk.unlink(missing_ok=True)
            files.dir.mkdir(parents=True, exist_ok=True)
            create_overlay(files.disk, base.path, base.format)
            grow(files.disk, root_size(instance))

    def remove(self, server_id: uuid.UUID) -> None:
        files = self.files(server_id)
        shutil.rmtree(files.dir, ignore_errors=True)
        self.discard_original(server_id)

    # --- resize ----------------------------------------------------------------------------

    def stash_original(self, server_id: uuid.UUID, *, hand_over: bool) -> Path:
        files = self.files(server_id)
        if not files.resize_dir.exists():
            if not files.disk.exists():
                raise DriverError(f"server {server_id} has no disk on {self.host} to resize")
            os.replace(files.dir, files.resize_dir)
        if not files.resize_owner.exists():
            files.resize_owner.write_text(self.host)
        if hand_over:
            remote = self._store().remote
            if remote is None:
                copy(files.resize_disk, self._store().transfer(server_id))
            else:
                remote.send_disk(server_id, files.resize_disk)
        return files.resize_disk

    def take_over(self, instance: InstanceSpec, *, same_host: bool) -> None:
        files = self.files(instance.server_id)
        files.dir.mkdir(parents=True, exist_ok=True)
        if not files.disk.exists():
            self._receive(instance, files.disk, same_host=same_host)
        if not same_host:
            self._drop_transfer(instance.server_id)
        wanted, current = root_size(instance), virtual_size(files.disk)
        if 0 < wanted < current:
            raise DriverError(
                f"the root disk of server {instance.server_id} cannot shrink from "
                f"{current // GIB} GB to the {instance.flavor.disk_gb} GB of flavor "
                f"{instance.flavor.name}"
            )
        grow(files.disk, wanted)

    def _receive(self, instance: InstanceSpec, disk: Path, *, same_host: bool) -> None:
        """The resized server's disk at ``disk``: its original here, else what the host it
        leaves handed over (through the shared store, or the image service)."""
        server_id = instance.server_id
        remote = self._store().remote if not same_host else None
        if remote is not None:
            partial = _partial(disk)
            remote.receive_disk(server_id, partial)
            _publish(partial, disk)
        else:
            files = self.files(server_id)
            source = files.resize_disk if same_host else self._store().transfer(server_id)
            if not source.exists():
                raise DriverError(f"the disk of server {server_id} was not handed over")
            copy(source, disk)
        if not same_host:
            self._rebase_on_own_base(instance, disk)

    def _rebase_on_own_base(self, instance: InstanceSpec, disk: Path) -> None:
        """A disk handed over from another host names that host's copy of its image as its
        backing file: where hosts keep images of their own (downloaded from the image API),
        point it at this host's copy, fetched if need be (the data is the same image's)."""
        store = self._store()
        if store.remote is None:
            return  # the shared store's file: the same path on every host
        base = store.base(instance.image)
        qemu_img("rebase", "-u", "-F", base.format, "-b", str(base.path), str(disk))

    def restore_original(self, server_id: uuid.UUID) -> None:
        files = self.files(server_id)
        if self._owns_original(files):
            shutil.rmtree(files.dir, ignore_errors=True)  # the resized copy, if on this host
            files.resize_owner.unlink()
            os.replace(files.resize_dir, files.dir)
        self._drop_transfer(server_id)

    def discard_original(self, server_id: uuid.UUID) -> None:
        files = self.files(server_id)
        if self._owns_original(files):
            shutil.rmtree(files.resize_dir, ignore_errors=True)
        self._drop_transfer(server_id)

    def _owns_original(self, files: InstanceFiles) -> bool:
        """Is the original kept aside this host's? (On an instances directory shared between
        hosts, the other host's is not to be touched.)"""
        try:
            return files.resize_owner.read_text() == self.host
        except FileNotFoundError:
            return False

    def _drop_transfer(self, server_id: uuid.UUID) -> None:
        if self.store is None:
            return
        if self.store.remote is not None:
            self.store.remote.drop_disk(server_id)
        else:
            shutil.rmtree(self.store.transfer(server_id).parent, ignore_errors=True)

    # --- live migration --------------------------------------------------------------------

    def prepare_arrival(self, instance: InstanceSpec, *, block_migration: bool) -> None:
        files = self.files(instance.server_id)
        if not block_migration:
            if not files.disk.exists():
                raise DriverError(
                    f"the disk of server {instance.server_id} is not on {self.host}: without "
                    "storage shared with the source, migrate with block_migration"
                )
            return
        if files.disk.exists() and not files.arriving.exists():
            raise DriverError(
                f"the disk of server {instance.server_id} is on {self.host} already: its "
                "instances directory is shared with the source (migrate without "
                "block_migration)"
            )
        files.dir.mkdir(parents=True, exist_ok=True)
        files.arriving.write_text(self.host)
        self.ensure_root(instance)  # what the source's disk is: an overlay of that size

    def arrived(self, server_id: uuid.UUID) -> None:
        self.files(server_id).arriving.unlink(missing_ok=True)

    def discard_arrival(self, server_id: uuid.UUID) -> None:
        files = self.files(server_id)
        if files.arriving.exists():
            shutil.rmtree(files.dir, ignore_errors=True)
