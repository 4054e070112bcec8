"""Base images imported from files (stratus/images.py): into the image store and the image
table, where the API shows them; ``stratus image import`` and ``import-guest`` from the
command line. Images private to a fresh project go into the shared system (and are deleted
again); public ones only into databases of their own.
"""

from __future__ import annotations

import asyncio
import json
import struct
import uuid
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from shared.image_data.filesystem import DirectoryImageData
from stratus import cli, images
from stratus.system import System
from tests.support.client import ComputeClient
from tests.support.databases import fresh_database


def qcow2(path: Path) -> Path:
    """A small file with a standalone qcow2 header (enough for the importer's checks)."""
    path.write_bytes(b"QFI\xfb" + struct.pack(">IQI", 3, 0, 0) + b"\0" * 4076)
    return path


async def test_an_imported_image_is_active_in_the_api_with_its_file_in_the_store(
    api: ComputeClient,
    client_for: Callable[[str, str], ComputeClient],
    system: System,
    tmp_path: Path,
) -> None:
    assert system.pool is not None
    store = tmp_path / "store"
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"kernel")
    image = images.ImageFile(
        name="imported",
        path=qcow2(tmp_path / "disk.qcow2"),
        min_disk_gb=1,
        min_ram_mb=128,
        metadata={"os": "busybox"},
        kernel=kernel,
        cmdline="console=ttyS0",
    )
    async with system.pool.acquire() as conn:
        imported = await images.import_image(
            conn, DirectoryImageData(store), image, owner=api.tenant
        )
    assert imported.created
    assert imported.location == f"{imported.id}.qcow2"
    assert (store / imported.location).read_bytes() == image.path.read_bytes()
    assert (store / f"{imported.id}.kernel").read_bytes() == b"kernel"

    shown = (await api.get(f"/images/{imported.id}")).body["image"]
    assert (shown["name"], shown["status"], shown["minDisk"], shown["minRam"]) == (
        "imported",
        "ACTIVE",
        1,
        128,
    )
    assert shown["metadata"] == {
        "os": "busybox",
        "kernel": f"{imported.id}.kernel",
        "cmdline": "console=ttyS0",
    }
    row = await system.pool.fetchrow(
        "SELECT disk_format, location, size_bytes, image_type, is_public FROM images WHERE id = $1",
        imported.id,
    )
    assert row is not None
    assert tuple(row) == ("qcow2", imported.location, 4096, "base", False)
    stranger = client_for(f"t{uuid.uuid4().hex[:10]}", "bob")
    assert (await stranger.get(f"/images/{imported.id}")).status == 404

    # importing the same id again changes nothing
    async with system.pool.acquire() as conn:
        again = await images.import_image(
            conn,
            DirectoryImageData(store),
            images.ImageFile("other", qcow2(tmp_path / "b")),
            image_id=imported.id,
        )
    assert (again.created, again.name, again.location) == (False, "imported", imported.location)

    assert (await api.delete(f"/images/{imported.id}")).status == 204


async def test_a_bad_file_is_refused_before_anything_is_written(
    system: System, tmp_path: Path
) -> None:
    assert system.pool is not None
    store = tmp_path / "store"
    raw = tmp_path / "disk.raw"
    raw.write_bytes(b"\0" * 1024)
    image_id = uuid.uuid4()
    async with system.pool.acquire() as conn:
        with pytest.raises(images.ImageImportError, match="is not a qcow2 image"):
            await images.import_image(
                conn, DirectoryImageData(store), images.ImageFile("bad", raw), image_id=image_id
            )
        with pytest.raises(images.ImageImportError, match="needs a kernel"):
            await images.import_image(
                conn,
                DirectoryImageData(store),
                images.ImageFile("half", qcow2(tmp_path / "q"), initrd=raw),
            )
    assert await system.pool.fetchval("SELECT count(*) FROM images WHERE id = $1", image_id) == 0
    assert not store.exists() or list(store.iterdir()) == []


def built_guest(cache: Path) -> Path:
    """A guest as deploy/guest/build.sh leaves it in its cache (its disk a qcow2 header)."""
    directory = cache / "1-test"
    directory.mkdir(parents=True)
    qcow2(directory / "disk.qcow2")
    (directory / "manifest.json").write_text(
        json.dumps(
            {
                "name": "stratus-guest-1-test",
                "disk": "disk.qcow2",
                "disk_format": "qcow2",
                "min_ram_mb": 128,
                "min_disk_gb": 0,
                "login_prompt": "stratus-guest login:",
            }
        )
    )
    (cache / "current").symlink_to("1-test")
    return directory


async def test_the_command_line_imports_a_file_and_the_built_guest_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "setup_logging", lambda *args, **kwargs: None)  # pytest's stay
    store = tmp_path / "store"
    built_guest(tmp_path / "cache")
    monkeypatch.setenv("STRATUS_GUEST_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("STRATUS_IMAGE_STORE_DIR", str(store))
    async with fresh_database() as url:
        monkeypatch.setenv("STRATUS_DATABASE_URL", url)
        disk = qcow2(tmp_path / "mine.qcow2")
        options = ["--min-ram", "64", "--property", "purpose=test"]
        await asyncio.to_thread(
            cli.main, ["image", "import", "--name", "mine", "--file", str(disk), *options]
        )
        for _ in range(2):
            await asyncio.to_thread(cli.main, ["image", "import-guest"])
        output = capsys.readouterr().out.splitlines()
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch(
                "SELECT id, name, is_public, min_ram_mb, location FROM images "
                "WHERE location IS NOT NULL ORDER BY name"
            )
            purpose = await conn.fetchval("SELECT value FROM image_metadata WHERE key = 'purpose'")
        finally:
            await conn.close()
    assert [(r["name"], r["is_public"], r["min_ram_mb"]) for r in rows] == [
        ("mine", True, 64),
        ("stratus-guest-1-test", True, 128),
    ]
    assert purpose == "test"
    guest_id = images.read_guest(tmp_path / "cache" / "1-test").image_id
    assert rows[1]["id"] == guest_id
    assert sorted(p.name for p in store.iterdir()) == sorted(r["location"] for r in rows)
    assert "imported" in output[0] and "imported" in output[1]
    assert f"image {guest_id} (stratus-guest-1-test) already registered" in output[2]


@pytest.mark.parametrize(
    ("argv", "database", "complaint"),
    [
        (["import", "--name", "x", "--file", "f", "--property", "novalue"], True, "KEY=VALUE"),
        (["import-guest"], True, "no guest built yet"),
        (["import-guest"], False, "STRATUS_DATABASE_URL must be set"),
    ],
)
def test_the_command_line_says_what_is_wrong_before_it_connects(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    database: bool,
    complaint: str,
) -> None:
    monkeypatch.setattr(cli, "setup_logging", lambda *args, **kwargs: None)
    monkeypatch.setenv("STRATUS_GUEST_CACHE", str(tmp_path / "empty"))
    if database:  # nothing listens there: connecting would fail differently
        monkeypatch.setenv("STRATUS_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    else:
        monkeypatch.delenv("STRATUS_DATABASE_URL", raising=False)
    with pytest.raises(SystemExit, match=complaint):
        cli.main(["image", *argv])
