"""The files ``stratus image import`` accepts, how they go into the store, and how a built
guest is found (stratus/images.py)."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import pytest

from shared.image_data.filesystem import DirectoryImageData
from stratus import images


def qcow2(path: Path, *, backing: bool = False) -> Path:
    """A file with a qcow2 header (version 3), with a backing file offset if asked."""
    header = b"QFI\xfb" + struct.pack(">IQI", 3, 0x200 if backing else 0, 8 if backing else 0)
    path.write_bytes(header + b"\0" * 512)
    return path


def test_a_standalone_qcow2_and_a_raw_file_are_what_they_say(tmp_path: Path) -> None:
    images.check_format(qcow2(tmp_path / "disk.qcow2"), "qcow2")
    raw = tmp_path / "disk.raw"
    raw.write_bytes(b"\x55\xaa" * 1024)
    images.check_format(raw, "raw")


@pytest.mark.parametrize(
    ("kind", "declared", "complaint"),
    [
        ("raw", "qcow2", "is not a qcow2 image"),
        ("qcow2", "raw", "is a qcow2 image, not raw"),
        ("overlay", "qcow2", "has a backing file"),
        ("qcow2", "vmdk", "is not one of"),
        ("missing", "qcow2", "cannot read"),
    ],
)
def test_a_file_that_is_not_what_it_says_is_refused(
    tmp_path: Path, kind: str, declared: str, complaint: str
) -> None:
    path = tmp_path / "image"
    if kind == "raw":
        path.write_bytes(b"\0" * 64)
    elif kind == "qcow2":
        qcow2(path)
    elif kind == "overlay":
        qcow2(path, backing=True)
    with pytest.raises(images.ImageImportError, match=complaint):
        images.check_format(path, declared)


async def test_a_file_saved_into_the_store_appears_whole_and_replaces_an_older_one(
    tmp_path: Path,
) -> None:
    source = tmp_path / "source"
    source.write_bytes(b"new" * 1000)
    store = tmp_path / "store"
    store.mkdir()
    (store / "x.qcow2").write_bytes(b"old")
    saved = await images.save_file(source, DirectoryImageData(store), "x.qcow2")
    assert (saved.size, saved.checksum) == (3000, hashlib.md5(b"new" * 1000).hexdigest())
    assert (store / "x.qcow2").read_bytes() == b"new" * 1000
    assert sorted(p.name for p in store.iterdir()) == ["x.qcow2"]  # nothing written aside left


async def test_a_file_that_cannot_be_read_leaves_nothing_in_the_store(tmp_path: Path) -> None:
    with pytest.raises(images.ImageImportError, match="cannot save"):
        await images.save_file(
            tmp_path / "no-such-file", DirectoryImageData(tmp_path / "store"), "x.qcow2"
        )
    assert list((tmp_path / "store").iterdir()) == []


def manifest(directory: Path, **overrides: object) -> Path:
    directory.mkdir(parents=True)
    values: dict[str, object] = {
        "name": "stratus-guest-1-test",
        "version": "1-test",
        "disk": "disk.qcow2",
        "disk_format": "qcow2",
        "min_ram_mb": 128,
        "min_disk_gb": 0,
        "login_prompt": "stratus-guest login:",
        **overrides,
    }
    (directory / "manifest.json").write_text(json.dumps(values))
    return directory


def test_the_built_guest_is_the_cache_s_current_one_once_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRATUS_GUEST_CACHE", str(tmp_path))
    assert images.guest_cache() == tmp_path
    assert images.built_guest() is None  # nothing built
    (tmp_path / "1-partial").mkdir()
    (tmp_path / "current").symlink_to("1-partial")
    assert images.built_guest() is None  # no manifest: not complete
    built = manifest(tmp_path / "1-test")
    (tmp_path / "current").unlink()
    (tmp_path / "current").symlink_to("1-test")
    assert images.built_guest() == built

    guest = images.read_guest(built)
    assert (guest.name, guest.disk, guest.min_ram_mb) == (
        "stratus-guest-1-test",
        built / "disk.qcow2",
        128,
    )
    assert guest.image_id == images.read_guest(built).image_id  # stable


def test_a_broken_manifest_is_no_guest(tmp_path: Path) -> None:
    with pytest.raises(images.ImageImportError, match="holds no built guest"):
        images.read_guest(manifest(tmp_path / "guest", min_ram_mb="lots"))
    with pytest.raises(images.ImageImportError, match="holds no built guest"):
        images.read_guest(tmp_path / "nowhere")
