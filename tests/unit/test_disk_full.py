"""A host whose disk fills up during a build (issue 17): running out of space is told as such,
naming the directory and the host (compute_agent/disk_full.py), wherever it happens: a
download into the image cache (which then keeps nothing), qemu-img making a root disk, the
config drive, or later in the build; and the build leaves no domain and no files.

The realvm suite fills a real tmpfs (tests/realvm/test_disk_full.py); here the errors are
those the system gives: ``/dev/full`` answers every write with ENOSPC, and qemu-img's complaint
is the one it prints on a full file system."""

from __future__ import annotations

import errno
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from compute_agent.disk_full import DiskFull, no_space_detail, writing
from compute_agent.image_cache import ImageCache
from compute_agent.image_service import ImageServiceClient
from compute_agent.virt.driver import DriverError
from compute_agent.virt.libvirt import disks
from compute_agent.virt.libvirt.disks import LocalDisks
from compute_agent.virt.libvirt.images import ImageStore
from shared.messages import FlavorSpec, ImageSpec, InstanceSpec
from shared.sealing import Keyring
from tests.support.missing import LIBVIRT_BINDING
from tests.support.sealing import MESSAGE_KEY

if TYPE_CHECKING:
    from compute_agent.virt.libvirt.driver import LibvirtDriver

NO_SPACE = os.strerror(errno.ENOSPC)  # "No space left on device"

#: what qemu-img prints when the file system it writes a new disk on is full
QEMU_IMG_FULL = "qemu-img: {path}: Could not write qcow2 header: No space left on device"

TINY = FlavorSpec(id="1", name="m1.tiny", vcpus=1, ram_mb=512, disk_gb=1)


def _no_space(path: Path) -> OSError:
    """The error a write on a full file system gets, as the kernel gives it."""
    try:
        with open("/dev/full", "wb") as full:
            full.write(b"x")
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
        return OSError(exc.errno, exc.strerror, str(path))
    raise AssertionError("/dev/full took a write")


def _instance(**fields: object) -> InstanceSpec:
    image = ImageSpec(id=uuid.uuid4(), name="base", location="base.qcow2")
    return InstanceSpec.model_validate(
        {"server_id": uuid.uuid4(), "name": "web", "flavor": TINY, "image": image, **fields}
    )


# --- telling a full disk ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "detail"),
    [
        (OSError(errno.ENOSPC, NO_SPACE, "/x/disk"), NO_SPACE),
        (OSError(errno.EDQUOT, os.strerror(errno.EDQUOT)), os.strerror(errno.EDQUOT)),
        (OSError(errno.EACCES, os.strerror(errno.EACCES), "/x/disk"), None),
        # an errno is the whole truth: a file named like the message is not a full disk
        (OSError(errno.ENOENT, os.strerror(errno.ENOENT), f"/x/{NO_SPACE}"), None),
        (DriverError("qemu-img create failed: " + QEMU_IMG_FULL.format(path="/x")), NO_SPACE),
        (DriverError("qemu-img create failed: Could not open '/x': Permission denied"), None),
        (DriverError("image 1 has no file in the image store to boot from"), None),
    ],
)
def test_a_full_disk_is_told_by_its_errno_or_a_programs_words(
    error: Exception, detail: str | None
) -> None:
    assert no_space_detail(error) == detail


def test_writing_names_the_full_directory_and_lets_other_errors_through(tmp_path: Path) -> None:
    with pytest.raises(DiskFull) as caught, writing(tmp_path / "instances", "h1"):
        raise _no_space(tmp_path / "instances" / "x" / "disk")
    assert str(caught.value) == (
        f"not enough disk space in {tmp_path / 'instances'} on host h1: {NO_SPACE}"
    )
    assert isinstance(caught.value, DriverError)  # reported as a failed action, with a fault

    # a full cache met while a root disk is made keeps naming the cache, now with the host
    with pytest.raises(DiskFull) as caught, writing(tmp_path / "instances", "h1"):
        raise DiskFull(tmp_path / "_base", NO_SPACE)
    assert caught.value.directory == tmp_path / "_base" and caught.value.host == "h1"

    with pytest.raises(PermissionError), writing(tmp_path / "instances", "h1"):
        raise PermissionError(errno.EACCES, "Permission denied")
    with pytest.raises(DriverError) as other, writing(tmp_path / "instances", "h1"):
        raise DriverError("the image service cannot be reached")
    assert not isinstance(other.value, DiskFull)


# --- the image cache -------------------------------------------------------------------------


class _FillingImageService(ImageServiceClient):
    """Streams the image into the file it is given; while ``full``, the disk fills up
    halfway through, as a real one would."""

    def __init__(self, data: bytes) -> None:
        super().__init__("http://image-service.invalid", Keyring.from_setting(MESSAGE_KEY))
        self.data = data
        self.full = True

    async def download(self, image_id: uuid.UUID, target: Path) -> str:
        with target.open("wb") as out:
            out.write(self.data[: len(self.data) // 2])
            if self.full:
                raise _no_space(target)
            out.write(self.data[len(self.data) // 2 :])
        return ""


async def test_a_download_that_fills_the_cache_keeps_nothing_and_a_later_one_works(
    tmp_path: Path,
) -> None:
    data = os.urandom(64 * 1024)
    service = _FillingImageService(data)
    cache = ImageCache(tmp_path / "_base", service)
    image = ImageSpec(id=uuid.uuid4(), name="guest", location="guest.qcow2")

    with pytest.raises(DiskFull) as caught:
        await cache.ensure(image)
    assert caught.value.directory == tmp_path / "_base"
    assert f"not enough disk space in {tmp_path / '_base'}" in str(caught.value)
    # neither half an image under its name, which every later build would trust, nor the
    # partial download
    assert list((tmp_path / "_base").iterdir()) == []

    service.full = False  # space was freed
    path = await cache.ensure(image)
    assert path.read_bytes() == data


# --- root disks ------------------------------------------------------------------------------


def test_a_root_disk_on_a_full_instances_directory_is_disk_full_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / "base.qcow2").write_bytes(b"QFI\xfb")

    def full_qemu_img(*args: str) -> str:
        raise DriverError(f"qemu-img {args[0]} failed: " + QEMU_IMG_FULL.format(path=args[-1]))

    monkeypatch.setattr(disks, "qemu_img", full_qemu_img)
    host = LocalDisks(tmp_path / "instances", ImageStore(store), "h1")
    instance = _instance()
    with pytest.raises(DiskFull) as caught:
        host.ensure_root(instance)
    assert str(caught.value) == (
        f"not enough disk space in {tmp_path / 'instances'} on host h1: {NO_SPACE}"
    )
    files = host.files(instance.server_id)
    assert not files.disk.exists()
    assert list(files.dir.iterdir()) == []  # no partial disk either: the build's cleanup
    host.remove(instance.server_id)  # ... removes the directory
    assert not files.dir.exists()


class _FullCache:
    """A host's copy of images (``RemoteImages``) whose directory is full."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def base(self, image: ImageSpec) -> Path:
        raise DiskFull(self.root, NO_SPACE)

    def file(self, name: str) -> Path:
        raise DiskFull(self.root, NO_SPACE)

    def send_disk(self, server_id: uuid.UUID, disk: Path) -> None:
        raise AssertionError("no disk is handed over here")

    def receive_disk(self, server_id: uuid.UUID, target: Path) -> None:
        raise AssertionError("no disk is handed over here")

    def drop_disk(self, server_id: uuid.UUID) -> None:
        raise AssertionError("no disk is handed over here")


def test_a_full_image_cache_is_named_as_such_with_the_host(tmp_path: Path) -> None:
    cache = tmp_path / "_base"
    host = LocalDisks(tmp_path / "instances", ImageStore(tmp_path, _FullCache(cache)), "h1")
    with pytest.raises(DiskFull) as caught:
        host.ensure_root(_instance())
    assert str(caught.value) == f"not enough disk space in {cache} on host h1: {NO_SPACE}"


# --- a whole build, on libvirt's test hypervisor -------------------------------------------


@pytest.fixture
async def driver(tmp_path: Path) -> AsyncIterator[LibvirtDriver]:
    """A host on libvirt's test hypervisor (which reads no disks: ``NoDisks``)."""
    pytest.importorskip("libvirt", reason=LIBVIRT_BINDING)
    from compute_agent.virt.libvirt.driver import LibvirtDriver

    the_driver = LibvirtDriver("test:///default", tmp_path / "instances")
    await the_driver.init_host("h1")
    yield the_driver
    await the_driver.close()


async def test_a_config_drive_that_fills_the_disk_fails_the_build_and_leaves_nothing(
    driver: LibvirtDriver, tmp_path: Path
) -> None:
    instance = _instance(metadata={"role": "web"})  # something to deliver: a config drive
    files = driver._disks.files(instance.server_id)
    files.dir.mkdir(parents=True)
    # where the drive is written before it is renamed: a file system that is full
    (files.dir / f".{files.config_drive.name}.partial").symlink_to("/dev/full")

    with pytest.raises(DiskFull) as caught:
        await driver.spawn(instance, "pw")
    assert str(caught.value) == (
        f"not enough disk space in {tmp_path / 'instances'} on host h1: {NO_SPACE}"
    )
    assert instance.domain_name not in await driver.list_instances()
    assert not files.dir.exists()


async def test_a_disk_that_fills_once_the_domain_is_defined_leaves_no_domain(
    driver: LibvirtDriver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance = _instance()

    def full(booted: InstanceSpec) -> None:
        raise _no_space(driver._disks.files(booted.server_id).console)

    monkeypatch.setattr(driver, "_booted", full)
    with pytest.raises(DiskFull, match=f"in {tmp_path / 'instances'} on host h1: {NO_SPACE}"):
        await driver.spawn(instance, "pw")
    assert instance.domain_name not in await driver.list_instances()
    assert not driver._disks.files(instance.server_id).dir.exists()


async def test_any_other_file_error_of_a_build_is_a_driver_error_not_a_crash(
    driver: LibvirtDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bare ``OSError`` would not be reported: the command would be retried until it is
    dead-lettered, the server stuck in BUILD until the reaper gives up on it."""
    instance = _instance()

    def refused(booted: InstanceSpec) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/x/console.log")

    monkeypatch.setattr(driver, "_booted", refused)
    with pytest.raises(DriverError) as caught:
        await driver.spawn(instance, "pw")
    assert not isinstance(caught.value, DiskFull)
    assert "could not write the server's files on host h1" in str(caught.value)
    assert instance.domain_name not in await driver.list_instances()
