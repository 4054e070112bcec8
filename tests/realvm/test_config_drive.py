"""The config drive on a real guest (compute_agent/config_drive.py): personality files, a key
pair and a user-data script reach the guest, which reports each on its serial console
(deploy/guest/README.md, "The config drive"), at its first boot, after a cold migration (a
new boot on the other host, from a drive built there) and after a live migration (the guest
runs on without a reboot, its drive rebuilt on the destination; a soft reboot there shows the
guest reads it).
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import yaml

from tests.clients.cli import openstack
from tests.clients.conftest import noauth_cloud
from tests.realvm.cluster import BOOT_TIMEOUT_S, Mark, RealCluster
from tests.support.client import ComputeClient
from tests.support.config_drive import read_drive

#: a fixed public key (imported, so its text is known; nothing ever logs in with it)
KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOgb8RyhbGfMEmlvvDVpW2cKd09+/17sqQWfzl0LsUmy "
    "realvm@stratus-test"
)
#: what the personality files hold: /etc/issue replaces the guest's own (getty prints it
#: before the login prompt), /root/hello.txt is new (the script prints it)
ISSUE = b"Stratus guest, its issue delivered by the config drive\n"
HELLO = b"hello from the config drive\n"
FILES = {"/etc/issue": ISSUE, "/root/hello.txt": HELLO}
SCRIPT = (
    b"#!/bin/sh\n"
    b'echo "user-data says hi from $(hostname)"\n'
    b'echo "hello.txt: $(cat /root/hello.txt)"\n'
)

PREFIX = "stratus-guest: config-drive: "
#: what os-getConsoleOutput leaves out of the log, as nova did (a serial console's CRs too)
CONTROL = re.compile("[\x00-\x08\x0b-\x1f]")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def delivery(text: str) -> list[str]:
    """The config drive's lines of the one boot in ``text``: from ``found`` to ``done``,
    with what the script printed between them (the first may follow terminal escapes)."""
    assert text.count(PREFIX + "found ") == 1, f"not one boot with a drive:\n{text[-3000:]}"
    start = text.index(PREFIX + "found ")
    end = text.find(PREFIX + "done", start)
    assert end >= 0, f"the drive was never done with:\n{text[start:]}"
    block = text[start : end + len(PREFIX + "done")]
    return [line.rstrip("\r") for line in block.split("\n")]


def assert_delivered(lines: list[str], hostname: str) -> None:
    """Each file (the replaced one backed up first) with its mode and owner, the key, the
    script's run and output, in the guest's order."""
    assert lines[0] == PREFIX + "found /dev/sr0", lines
    backup = re.fullmatch(re.escape(PREFIX + "backup /etc/issue.bak.") + r"(\d+)", lines[1])
    assert backup is not None, lines
    # the guest's clock is the host's (a unix time of now, give or take a slow boot)
    assert abs(int(backup[1]) - time.time()) < 600, (backup[1], time.time())
    assert lines[2:] == [
        PREFIX + "file /etc/issue 440 root:root",
        PREFIX + "file /root/hello.txt 440 root:root",
        PREFIX + "authorized_keys " + KEY,
        PREFIX + "user-data running",
        f"user-data says hi from {hostname}",
        "hello.txt: " + HELLO.decode().strip(),
        PREFIX + "user-data exit 0",
        PREFIX + "done",
    ], lines


async def assert_booted_with_drive(
    cluster: RealCluster, server_id: str, since: Mark | None = None
) -> list[str]:
    """Wait for the login prompt (after ``since``); the boot's drive lines, checked, and the
    new /etc/issue shown by getty before the prompt. The lines."""
    await cluster.booted(server_id, since=since)
    text = await cluster.console_since(server_id, since)
    lines = delivery(text)
    assert_delivered(lines, hostname(cluster))
    after = text[text.index(PREFIX + "done") :]
    issue = after.find(ISSUE.decode().strip())
    assert 0 <= issue < after.find(cluster.guest.login_prompt), after[:1000]
    return lines


def hostname(cluster: RealCluster) -> str:
    """The guest's host name (its login prompt's first word: ``stratus-guest``)."""
    return cluster.guest.login_prompt.split()[0]


def assert_drive(path: Path) -> None:
    """A config drive at ``path`` holding the server's two files and its key."""
    assert path.is_file(), path
    drive = read_drive(path)
    assert drive.label == "config-2"
    assert drive.delivered() == FILES
    assert list(drive.meta_data["public_keys"].values()) == [KEY]
    assert drive.files["openstack/latest/user_data"] == SCRIPT


def live(host: str) -> dict[str, Any]:
    return {"os-migrateLive": {"host": host, "block_migration": True, "disk_over_commit": False}}


async def test_a_config_drive_delivers_files_key_and_script_across_migrations(
    api: ComputeClient, admin: ComputeClient, realvm: RealCluster, tmp_path: Path
) -> None:
    cluster = realvm
    reply = await api.post("/os-keypairs", {"keypair": {"name": "rv-key", "public_key": KEY}})
    assert reply.status == 200, reply
    assert reply.body["keypair"]["public_key"] == KEY

    started = time.monotonic()
    reply = await api.create_server(
        "drive",
        cluster.image_id,
        "rv.tiny",
        key_name="rv-key",
        user_data=b64(SCRIPT),
        personality=[{"path": path, "contents": b64(data)} for path, data in FILES.items()],
    )
    assert reply.status == 202, reply
    server_id: str = reply.body["server"]["id"]
    await api.wait_for_status(server_id, "ACTIVE", timeout_s=BOOT_TIMEOUT_S)
    cluster.stopwatch.record("boot (config drive): create → ACTIVE", time.monotonic() - started)
    lines = await assert_booted_with_drive(cluster, server_id)
    cluster.stopwatch.record(
        "boot (config drive): create → login prompt", time.monotonic() - started
    )
    home = await cluster.host_of(server_id)
    away = cluster.other(home)
    assert_drive(cluster.instances_dirs[home] / server_id / "disk.config")

    # the same through the API: nova's os-getConsoleOutput, the whole log or its last lines
    reply = await api.post(f"/servers/{server_id}/action", {"os-getConsoleOutput": {}})
    assert reply.status == 200, reply
    output = reply.body["output"]
    assert delivery(output) == lines
    assert cluster.guest.login_prompt in output
    reply = await api.post(f"/servers/{server_id}/action", {"os-getConsoleOutput": {"length": 5}})
    assert reply.status == 200, reply
    tail = reply.body["output"]
    assert 0 < len(tail.splitlines()) <= 5, tail
    # (the log as nova gave it: without control characters but tab and newline)
    assert tail in CONTROL.sub("", await cluster.console_since(server_id)), tail
    # and as people read it: `openstack console log show`
    clouds = tmp_path / "clouds.yaml"
    cloud = noauth_cloud(api.url, api.tenant, "alice")
    clouds.write_text(yaml.safe_dump({"clouds": {"alice": cloud}}))
    shown = await asyncio.to_thread(openstack, clouds, "alice", "console", "log", "show", server_id)
    assert delivery(shown) == lines and cluster.guest.login_prompt in shown, shown

    # a cold migration: the guest boots on the other host, from a drive built there
    mark = await cluster.mark(server_id)
    moved = await cluster.act(
        admin,
        server_id,
        {"migrate": None},
        until="VERIFY_RESIZE",
        timing="migrate (config drive) → VERIFY_RESIZE",
    )
    assert moved["OS-EXT-SRV-ATTR:host"] == away
    async with cluster.stopwatch.measure("migrate (config drive): VERIFY_RESIZE → login prompt"):
        await assert_booted_with_drive(cluster, server_id, since=mark)
    assert (await cluster.wait_status(server_id, lambda _: True, since=mark)).boot == 2
    assert_drive(cluster.instances_dirs[away] / server_id / "disk.config")
    await cluster.act(
        admin,
        server_id,
        {"confirmResize": None},
        until="ACTIVE",
        timing="confirmResize (migrate) → ACTIVE",
    )
    assert cluster.instance_files(server_id) == [
        f"{away}: {cluster.instances_dirs[away] / server_id}"
    ]

    # a live (block) migration back: the guest runs on, reading the drive built at home
    await cluster.act(
        admin,
        server_id,
        live(home),
        until="ACTIVE",
        timing="os-migrateLive (block) → ACTIVE",
    )
    assert await cluster.host_of(server_id) == home
    assert cluster.instance_files(server_id) == [
        f"{home}: {cluster.instances_dirs[home] / server_id}"
    ]
    drive = cluster.instances_dirs[home] / server_id / "disk.config"
    for inactive in (False, True):
        domain = ET.fromstring(await cluster.domain_xml(home, server_id, inactive=inactive))
        cdroms = domain.findall("devices/disk[@device='cdrom']")
        assert len(cdroms) == 1, ET.tostring(domain, encoding="unicode")
        (cdrom,) = cdroms
        source, target = cdrom.find("source"), cdrom.find("target")
        assert source is not None and target is not None
        assert (source.get("file"), target.get("bus")) == (str(drive), "sata")
        assert cdrom.find("readonly") is not None
    assert_drive(drive)
    mark = await cluster.mark(server_id)
    running = await cluster.wait_status(server_id, lambda _: True, since=mark)
    assert running.boot == 2, "the guest rebooted in the live migration"
    assert PREFIX not in await cluster.console_since(server_id, mark)

    # a soft reboot there: the guest finds and reads the drive on this host
    await cluster.act(
        api, server_id, {"reboot": {"type": "SOFT"}}, until="ACTIVE", timing="reboot SOFT → ACTIVE"
    )
    async with cluster.stopwatch.measure("reboot SOFT: ACTIVE → login prompt"):
        await assert_booted_with_drive(cluster, server_id, since=mark)
    assert (await cluster.wait_status(server_id, lambda s: s.boot > 2, since=mark)).boot == 3

    await cluster.delete(api, server_id)
    assert cluster.leftovers(server_id) == []
