"""A server's console log as people ask for it: ``openstack console log show [--lines N]``
and python-novaclient's ``servers.get_console_output`` (what ``nova console-log`` calls),
against `stratus up` (noauth), whose hosts run libvirt's test hypervisor (or the fake one):
the guest's boot and its login prompt, printed by the driver (compute_agent/virt/fake_guest.py).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import yaml

from compute_agent.virt.fake_guest import ISSUE, LOGIN_PROMPT
from shared.db import seed
from tests.clients.cli import as_json, eventually, openstack
from tests.clients.conftest import nova

IMAGE_NAME = seed.DEFAULT_IMAGES[0][0]


def test_openstack_console_log_show_prints_the_boot_and_its_last_lines(
    noauth_clouds: Path,
) -> None:
    created = as_json(
        openstack(
            noauth_clouds, "alice", "server", "create", "--image", IMAGE_NAME,
            "--flavor", "m1.tiny", "--wait", "-f", "json", f"log-{uuid.uuid4().hex[:6]}",
        )
    )  # fmt: skip
    try:
        whole = openstack(noauth_clouds, "alice", "console", "log", "show", created["id"])
        lines = whole.splitlines()
        assert lines[-1] == LOGIN_PROMPT and ISSUE in lines, whole
        assert any(line.startswith("stratus-guest: booting ") for line in lines), whole
        tail = openstack(
            noauth_clouds, "alice", "console", "log", "show", "--lines", "2", created["id"]
        )
        assert tail.splitlines() == [ISSUE, LOGIN_PROMPT]
    finally:
        openstack(noauth_clouds, "alice", "server", "delete", "--wait", created["id"])


def test_novaclient_s_console_output_gives_the_last_lines(
    stratus_up: str, noauth_clouds: Path
) -> None:
    clouds = yaml.safe_load(noauth_clouds.read_text())["clouds"]
    project = clouds["alice"]["auth"]["token"].split(":", 1)[1]
    client = nova(stratus_up, project, "alice")
    image = str(seed.image_id(IMAGE_NAME))
    server = client.servers.create(f"log-{uuid.uuid4().hex[:6]}", image, "1")
    try:
        eventually(lambda: client.servers.get(server.id).status == "ACTIVE", "the server runs")
        assert client.servers.get_console_output(server, length=2) == (f"{ISSUE}\n{LOGIN_PROMPT}\n")
        whole = client.servers.get(server.id).get_console_output()
        assert whole.endswith(f"{LOGIN_PROMPT}\n") and whole.count(LOGIN_PROMPT) == 1
    finally:
        client.servers.delete(server)
