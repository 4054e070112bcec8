"""A real host's disks (compute_agent/virt/libvirt/disks.py, images.py), made with qemu-img in
temporary directories: root disks as overlays on an image's file, grown to the flavor; the
files of a resize kept aside, handed over through the image store and put back; the disk a
block live migration arrives on; and what the image store lets an image name."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from compute_agent.virt.driver import DriverError
from compute_agent.virt.libvirt import disks
from compute_agent.virt.libvirt.disks import GIB, LocalDisks, NoDisks
from compute_agent.virt.libvirt.images import ImageStore
from shared.messages import FlavorSpec, ImageSpec, InstanceSpec
from tests.support.missing import QEMU_UTILS

needs_qemu_img = pytest.mark.skipif(
    shutil.which("qemu-img") is None or shutil.which("qemu-io") is None,
    reason=QEMU_UTILS,
)

TINY = FlavorSpec(id="1", name="m1.tiny", vcpus=1, ram_mb=512, disk_gb=1)
SMALL = FlavorSpec(id="2", name="m1.small", vcpus=1, ram_mb=2048, disk_gb=2)
#: an image's own size (the flavor's disk of 0 keeps it)
BASE_SIZE = 64 * 1024**2


def _info(path: Path) -> dict[str, object]:
    out = subprocess.run(
        ["qemu-img", "info", "-U", "--output=json", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    info: dict[str, object] = json.loads(out)
    return info


def _write(path: Path, offset: int, data: bytes) -> None:
    """Write ``data`` at ``offset`` as a guest would (through the qcow2 layer)."""
    subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", f"write -P {data[0]} {offset} {len(data)}", str(path)],
        check=True,
        capture_output=True,
    )


def _pattern_at(path: Path, offset: int, byte: int, length: int = 512) -> bool:
    done = subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", f"read -P {byte} {offset} {length}", str(path)],
        capture_output=True,
        text=True,
    )
    return done.returncode == 0 and "Pattern verification failed" not in done.stdout


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    root.mkdir()
    if shutil.which("qemu-img") is not None:
        disks.qemu_img("create", "-q", "-f", "qcow2", str(root / "base.qcow2"), str(BASE_SIZE))
    return root


def _instance(flavor: FlavorSpec = TINY, **image: object) -> InstanceSpec:
    spec = {"id": uuid.uuid4(), "name": "base", "location": "base.qcow2", **image}
    return InstanceSpec(
        server_id=uuid.uuid4(),
        name="web",
        flavor=flavor,
        image=ImageSpec.model_validate(spec),
    )


def _host(tmp_path: Path, store: Path, name: str, instances: str | None = None) -> LocalDisks:
    return LocalDisks(tmp_path / (instances or name), ImageStore(store), name)


# --- root disks ------------------------------------------------------------------------------


@needs_qemu_img
def test_a_root_disk_is_an_overlay_on_the_image_grown_to_the_flavor(
    tmp_path: Path, store: Path
) -> None:
    host = _host(tmp_path, store, "a")
    instance = _instance()
    host.ensure_root(instance)
    files = host.files(instance.server_id)
    info = _info(files.disk)
    assert info["format"] == "qcow2"
    assert info["full-backing-filename"] == str((store / "base.qcow2").resolve())
    assert info["virtual-size"] == 1 * GIB
    assert not _info(store / "base.qcow2").get("dirty-flag")
    _write(files.disk, 0, b"\x07" * 512)
    host.ensure_root(instance)  # again: the disk (and what the guest wrote) is kept
    assert _pattern_at(files.disk, 0, 7)
    assert _pattern_at(store / "base.qcow2", 0, 0)  # the image's file is never written


@needs_qemu_img
def test_a_flavor_without_a_disk_size_keeps_the_image_size(tmp_path: Path, store: Path) -> None:
    host = _host(tmp_path, store, "a")
    instance = _instance(FlavorSpec(id="0", name="zero", vcpus=1, ram_mb=64, disk_gb=0))
    host.ensure_root(instance)
    assert _info(host.files(instance.server_id).disk)["virtual-size"] == BASE_SIZE


@needs_qemu_img
def test_a_rebuild_gets_a_fresh_disk_on_the_new_image(tmp_path: Path, store: Path) -> None:
    host = _host(tmp_path, store, "a")
    instance = _instance()
    host.ensure_root(instance)
    disk = host.files(instance.server_id).disk
    _write(disk, 0, b"\x07" * 512)
    disks.qemu_img("create", "-q", "-f", "qcow2", str(store / "other.qcow2"), "32M")
    rebuilt = instance.model_copy(
        update={"image": ImageSpec(id=uuid.uuid4(), name="other", location="other.qcow2")}
    )
    host.replace_root(rebuilt)
    assert _info(disk)["full-backing-filename"] == str((store / "other.qcow2").resolve())
    assert _pattern_at(disk, 0, 0)
    with pytest.raises(DriverError, match="no file in the image store"):
        host.replace_root(
            rebuilt.model_copy(update={"image": ImageSpec(id=uuid.uuid4(), name="x")})
        )
    assert disk.exists()  # refused before anything was lost


@needs_qemu_img
def test_remove_takes_every_file_of_the_server(tmp_path: Path, store: Path) -> None:
    host = _host(tmp_path, store, "a")
    instance = _instance()
    host.ensure_root(instance)
    host.stash_original(instance.server_id, hand_over=True)
    host.remove(instance.server_id)
    host.remove(instance.server_id)  # twice is fine
    assert list((tmp_path / "a").iterdir()) == []
    assert list((store / "transfers").iterdir()) == []


# --- resize ----------------------------------------------------------------------------------


@needs_qemu_img
def test_a_resize_on_one_host_keeps_the_original_until_confirmed(
    tmp_path: Path, store: Path
) -> None:
    host = _host(tmp_path, store, "a")
    old = _instance()
    new = old.model_copy(update={"flavor": SMALL})
    host.ensure_root(old)
    files = host.files(old.server_id)
    _write(files.disk, 0, b"\x01" * 512)

    assert host.stash_original(old.server_id, hand_over=False) == files.resize_disk
    assert host.stash_original(old.server_id, hand_over=False) == files.resize_disk  # again
    assert not (store / "transfers").exists()  # nothing leaves the host
    host.take_over(new, same_host=True)
    assert _info(files.disk)["virtual-size"] == 2 * GIB
    assert _info(files.resize_disk)["virtual-size"] == 1 * GIB
    _write(files.disk, 0, b"\x02" * 512)  # the resized guest writes its copy

    host.restore_original(old.server_id)  # revert
    host.restore_original(old.server_id)  # again: nothing more
    assert _pattern_at(files.disk, 0, 1) and _info(files.disk)["virtual-size"] == 1 * GIB
    assert not files.resize_dir.exists()

    host.stash_original(old.server_id, hand_over=False)
    host.take_over(new, same_host=True)
    host.discard_original(old.server_id)  # confirm
    assert not files.resize_dir.exists() and _pattern_at(files.disk, 0, 1)


@needs_qemu_img
def test_a_resize_to_another_host_goes_through_the_image_store(tmp_path: Path, store: Path) -> None:
    source, dest = _host(tmp_path, store, "a"), _host(tmp_path, store, "b")
    old = _instance()
    new = old.model_copy(update={"flavor": SMALL})
    source.ensure_root(old)
    _write(source.files(old.server_id).disk, 4096, b"\x05" * 512)

    source.stash_original(old.server_id, hand_over=True)
    transfer = store / "transfers" / str(old.server_id) / "disk"
    assert transfer.is_file()
    dest.take_over(new, same_host=False)
    dest.take_over(new, same_host=False)  # again: its own copy is kept
    copy = dest.files(old.server_id).disk
    assert _pattern_at(copy, 4096, 5) and _info(copy)["virtual-size"] == 2 * GIB
    assert _info(copy)["full-backing-filename"] == str((store / "base.qcow2").resolve())
    assert not transfer.parent.exists()  # taken: gone from the store

    source.discard_original(old.server_id)  # confirm
    assert list((tmp_path / "a").iterdir()) == []


@needs_qemu_img
def test_a_destination_cannot_take_over_what_was_never_handed_over(
    tmp_path: Path, store: Path
) -> None:
    dest = _host(tmp_path, store, "b")
    with pytest.raises(DriverError, match="was not handed over"):
        dest.take_over(_instance(), same_host=False)


@needs_qemu_img
def test_a_root_disk_never_shrinks(tmp_path: Path, store: Path) -> None:
    host = _host(tmp_path, store, "a")
    big = _instance(SMALL)
    host.ensure_root(big)
    host.stash_original(big.server_id, hand_over=False)
    with pytest.raises(DriverError, match="cannot shrink from 2 GB"):
        host.take_over(big.model_copy(update={"flavor": TINY}), same_host=True)
    host.restore_original(big.server_id)  # the rollback finds the original as it was
    assert _info(host.files(big.server_id).disk)["virtual-size"] == 2 * GIB


@needs_qemu_img
def test_on_a_shared_instances_directory_only_the_owner_removes_the_original(
    tmp_path: Path, store: Path
) -> None:
    """Two hosts on one instances directory (shared storage): the destination's destroy of
    its copy (a revert) leaves the source's original alone."""
    source = _host(tmp_path, store, "a", instances="shared")
    dest = _host(tmp_path, store, "b", instances="shared")
    old = _instance()
    source.ensure_root(old)
    source.stash_original(old.server_id, hand_over=True)
    dest.take_over(old.model_copy(update={"flavor": SMALL}), same_host=False)
    dest.remove(old.server_id)  # the revert's first step, on the destination
    files = source.files(old.server_id)
    assert files.resize_disk.is_file()
    source.restore_original(old.server_id)
    assert files.disk.is_file() and not files.resize_dir.exists()


# --- live migration --------------------------------------------------------------------------


@needs_qemu_img
def test_a_block_migration_arrives_on_an_overlay_of_the_same_size(
    tmp_path: Path, store: Path
) -> None:
    source, dest = _host(tmp_path, store, "a"), _host(tmp_path, store, "b")
    instance = _instance(SMALL)
    source.ensure_root(instance)
    dest.prepare_arrival(instance, block_migration=True)
    dest.prepare_arrival(instance, block_migration=True)  # again: fine
    here, there = source.files(instance.server_id).disk, dest.files(instance.server_id).disk
    assert _info(there)["virtual-size"] == _info(here)["virtual-size"]
    assert _info(there)["full-backing-filename"] == _info(here)["full-backing-filename"]
    dest.arrived(instance.server_id)
    dest.discard_arrival(instance.server_id)  # arrived: its own now, nothing is removed
    assert there.is_file()


# --- the image store -------------------------------------------------------------------------


def test_an_image_must_name_a_file_inside_the_store_in_a_known_format(
    tmp_path: Path, store: Path
) -> None:
    (tmp_path / "secret").write_text("host file")
    (store / "image.vmdk").write_text("vmdk")
    image_store = ImageStore(store)
    for image, refusal in (
        (ImageSpec(id=uuid.uuid4(), name="none"), "no file in the image store"),
        (ImageSpec(id=uuid.uuid4(), name="x", location="../secret"), "not in the image store"),
        (ImageSpec(id=uuid.uuid4(), name="x", location="/etc/passwd"), "not in the image store"),
        (ImageSpec(id=uuid.uuid4(), name="x", location="gone.qcow2"), "missing from"),
        (
            ImageSpec(id=uuid.uuid4(), name="x", location="image.vmdk", disk_format="vmdk"),
            "qcow2 or raw",
        ),
    ):
        with pytest.raises(DriverError, match=refusal):
            image_store.base(image)
    (store / "disk.raw").write_bytes(b"\0" * 512)
    raw = ImageSpec(id=uuid.uuid4(), name="raw", location="disk.raw", disk_format="raw")
    assert image_store.base(raw).format == "raw"


def test_an_image_boots_the_kernel_its_metadata_names_from_the_store(store: Path) -> None:
    (store / "vmlinuz").write_bytes(b"MZ kernel")
    (store / "initrd.img").write_bytes(b"\x1f\x8b initramfs")
    image_store = ImageStore(store)
    plain = ImageSpec(id=uuid.uuid4(), name="disk-boot", location="base.qcow2")
    assert image_store.boot_files(plain) is None
    props = {"kernel": "vmlinuz", "initrd": "initrd.img", "cmdline": "console=ttyS0"}
    boot = image_store.boot_files(plain.model_copy(update={"properties": props}))
    assert boot is not None
    assert (boot.kernel, boot.initrd, boot.cmdline) == (
        (store / "vmlinuz").resolve(),
        (store / "initrd.img").resolve(),
        "console=ttyS0",
    )
    only_kernel = image_store.boot_files(
        plain.model_copy(update={"properties": {"kernel": "vmlinuz"}})
    )
    assert only_kernel is not None and only_kernel.initrd is None and only_kernel.cmdline is None


@needs_qemu_img
def test_image_metadata_cannot_make_a_host_file_or_a_disk_a_kernel(
    tmp_path: Path, store: Path
) -> None:
    """Owners edit their images' metadata: a kernel or initrd outside the store, or another
    image's disk, is refused."""
    (tmp_path / "secret").write_text("host file")
    image_store = ImageStore(store)
    image = ImageSpec(id=uuid.uuid4(), name="x", location="base.qcow2")
    for props, refusal in (
        ({"kernel": "../secret"}, "not in the image store"),
        ({"kernel": "base.qcow2"}, "is a disk image"),
        ({"kernel": "base.qcow2", "initrd": "../secret"}, "is a disk image"),
    ):
        with pytest.raises(DriverError, match=refusal):
            image_store.boot_files(image.model_copy(update={"properties": props}))


# --- qemu-img and files ----------------------------------------------------------------------


@needs_qemu_img
def test_a_flattened_image_stands_alone_and_appears_whole(tmp_path: Path, store: Path) -> None:
    host = _host(tmp_path, store, "a")
    instance = _instance()
    host.ensure_root(instance)
    disk = host.files(instance.server_id).disk
    _write(disk, 8192, b"\x09" * 512)
    dest = store / "image.qcow2"
    disks.flatten(disk, dest)
    info = _info(dest)
    assert "backing-filename" not in info and info["virtual-size"] == 1 * GIB
    assert _pattern_at(dest, 8192, 9)
    assert [p.name for p in store.iterdir() if p.name.startswith(".")] == []
    disks.flatten(tmp_path / "missing", dest)  # there already: the earlier result is kept
    with pytest.raises(DriverError, match="qemu-img convert failed"):
        disks.flatten(tmp_path / "missing", store / "other.qcow2")
    assert not (store / "other.qcow2").exists()
    assert [p.name for p in store.iterdir() if p.name.startswith(".")] == []


def test_direct_io_is_probed_where_the_disks_are(tmp_path: Path) -> None:
    assert isinstance(disks.supports_direct_io(tmp_path), bool)
    assert list(tmp_path.iterdir()) == []  # the probe leaves nothing


def test_the_test_hypervisor_makes_no_files(tmp_path: Path) -> None:
    none = NoDisks(tmp_path / "instances")
    instance = _instance()
    none.ensure_root(instance)
    none.prepare_arrival(instance, block_migration=True)
    assert (
        none.stash_original(instance.server_id, hand_over=True)
        == none.files(instance.server_id).disk
    )
    none.take_over(instance, same_host=False)
    none.remove(instance.server_id)
    assert not (tmp_path / "instances").exists()


# --- hosts with images of their own (downloaded from the image API) ----------------------------


class _CopyingRemote:
    """The image service as a host reaches it (compute_agent/virt/libvirt/images.py's
    ``RemoteImages``), here copying from a directory where the real one downloads: a host's
    own copies under ``<host>/_base``, disks handed over through ``transfers``."""

    def __init__(self, store: Path, cache: Path, transfers: Path) -> None:
        self.store, self.cache, self.transfers = store, cache, transfers

    def base(self, image: ImageSpec) -> Path:
        return self._copy(self.store / str(image.location), self.cache / str(image.id))

    def file(self, name: str) -> Path:
        return self._copy(self.store / name, self.cache / f"file-{name}")

    def send_disk(self, server_id: uuid.UUID, disk: Path) -> None:
        self._copy(disk, self.transfers / str(server_id))

    def receive_disk(self, server_id: uuid.UUID, target: Path) -> None:
        shutil.copyfile(self.transfers / str(server_id), target)

    def drop_disk(self, server_id: uuid.UUID) -> None:
        (self.transfers / str(server_id)).unlink(missing_ok=True)

    @staticmethod
    def _copy(source: Path, target: Path) -> Path:
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            shutil.copyfile(source, target)
        return target


def _caching_host(tmp_path: Path, store: Path, name: str) -> tuple[LocalDisks, Path]:
    """A host whose bases are its own copies (``<host>/_base``), as compute_agent/image_cache.py
    keeps them; its own image store directory, never the one images are copied from."""
    cache = tmp_path / name / "_base"
    remote = _CopyingRemote(store, cache, tmp_path / "transfers")
    own_store = tmp_path / name / "store"
    return LocalDisks(tmp_path / name / "instances", ImageStore(own_store, remote), name), cache


@needs_qemu_img
def test_a_host_with_its_own_images_boots_and_takes_over_disks_on_its_own_copy(
    tmp_path: Path, store: Path
) -> None:
    """The root disk is an overlay on the host's copy, never the store's file; a disk handed
    over by a resize from another host is pointed at this host's copy (fetched then), with
    what the guest wrote kept; and the disks' backing files are what the host's images are
    used by."""
    source, source_cache = _caching_host(tmp_path, store, "a")
    dest, dest_cache = _caching_host(tmp_path, store, "b")
    old = _instance()
    source.ensure_root(old)
    disk = source.files(old.server_id).disk
    assert _info(disk)["backing-filename"] == str(source_cache / str(old.image.id))
    _write(disk, 0, b"\x42" * 512)
    assert disks.backing_files(source.instances_dir) == {source_cache / str(old.image.id)}

    source.stash_original(old.server_id, hand_over=True)
    dest.take_over(old.model_copy(update={"flavor": SMALL}), same_host=False)
    moved = dest.files(old.server_id).disk
    assert _info(moved)["backing-filename"] == str(dest_cache / str(old.image.id))
    assert _pattern_at(moved, 0, 0x42)
    assert disks.backing_files(dest.instances_dir) == {dest_cache / str(old.image.id)}
    assert disks.backing_file(store / "base.qcow2") is None
    dest.discard_original(old.server_id)  # the confirm: the disk in transit goes
    assert list((tmp_path / "transfers").iterdir()) == []
    assert not (tmp_path / "a" / "store").exists() and not (tmp_path / "b" / "store").exists()
