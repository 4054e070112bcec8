"""The realvm suite's own machinery, without a hypervisor: reading a guest's console after a
mark (across a file moved aside and back), its status lines, the timing table, and the
libvirt daemons' configuration."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.missing import LIBVIRT_BINDING

pytest.importorskip("libvirt", reason=LIBVIRT_BINDING)

from tests.realvm.cluster import GuestStatus, Mark, _read_after, statuses
from tests.realvm.stopwatch import Stopwatch
from tests.support import libvirtd


def mark_of(*paths: Path) -> Mark:
    sizes = {}
    for path in paths:
        info = path.stat()
        sizes[(info.st_dev, info.st_ino)] = info.st_size
    return Mark(sizes)


def test_a_mark_follows_a_log_moved_aside_and_back(tmp_path: Path) -> None:
    own = tmp_path / "server" / "console.log"
    own.parent.mkdir()
    own.write_text("first boot\n")
    mark = mark_of(own)
    aside = tmp_path / "server_resize"
    os.replace(own.parent, aside)  # a resize sets the original aside ...
    copy = tmp_path / "server" / "console.log"
    copy.parent.mkdir()
    copy.write_text("resized copy\n")  # ... and the copy logs to a new file
    assert _read_after(copy, mark) == "resized copy\n"
    with (aside / "console.log").open("a") as log:
        log.write("after the mark\n")
    os.replace(copy.parent, tmp_path / "gone")
    os.replace(aside, tmp_path / "server")  # reverted: the original is back, same file
    assert _read_after(tmp_path / "server" / "console.log", mark) == "after the mark\n"


def test_a_log_cut_shorter_than_the_mark_is_read_whole(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    log.write_text("a long first life\n")
    mark = mark_of(log)
    log.write_text("new\n")  # same file, truncated
    assert _read_after(log, mark) == "new\n"
    assert _read_after(tmp_path / "missing.log", mark) == ""
    assert _read_after(log, None) == "new\n"


def test_status_lines_are_read_from_a_noisy_console() -> None:
    text = (
        "SYSLINUX 6.04\r\nstratus-guest: boot=2 up=5.10 mem=81908kB disk=2097152s\r\n"
        "stratus-guest login: stratus-guest: boot=2 up=7.16 mem=81908kB disk=4194304s\r\n"
    )
    assert statuses(text) == [
        GuestStatus(boot=2, up=5.10, mem_kb=81908, disk_sectors=2097152),
        GuestStatus(boot=2, up=7.16, mem_kb=81908, disk_sectors=4194304),
    ]
    assert statuses(text)[1].disk_gb == 2.0


def test_the_timing_table_has_a_row_per_action_in_first_seen_order() -> None:
    watch = Stopwatch()
    for action, seconds in (("boot", 10.0), ("pause", 0.1), ("boot", 14.0), ("boot", 12.0)):
        watch.record(action, seconds)
    assert watch.table().splitlines()[2:] == [
        "| boot | 3 | 12.0 | 10.0 | 14.0 |",
        "| pause | 1 | 0.1 | 0.1 | 0.1 |",
    ]


def test_each_daemon_listens_on_loopback_only_with_a_host_uuid_of_its_own(
    tmp_path: Path,
) -> None:
    daemons = [
        libvirtd.Libvirtd(name, tmp_path / name, port)
        for name, port in (("a", 16001), ("b", 16002))
    ]
    for daemon in daemons:
        libvirtd._write_config(daemon)
    configs = [(d.root / "etc" / "libvirtd.conf").read_text() for d in daemons]
    for daemon, config in zip(daemons, configs, strict=True):
        assert 'listen_addr = "127.0.0.1"' in config
        assert f'tcp_port = "{daemon.port}"' in config
        assert f'host_uuid = "{daemon.host_uuid}"' in config
        assert daemon.uri == f"qemu+tcp://127.0.0.1:{daemon.port}/system"
    assert daemons[0].host_uuid != daemons[1].host_uuid
    script = libvirtd._namespace_script(daemons[0])
    for system_dir in libvirtd.PRIVATE_DIRS:
        assert f"mount --bind {daemons[0].private(system_dir)} {system_dir}" in script
