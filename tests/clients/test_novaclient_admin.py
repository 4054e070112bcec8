"""python-novaclient, unchanged, against `stratus up`: every admin action of chapter 3.

Today's novaclient dropped inject-network-info, so that one goes through its HTTP client."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from novaclient import exceptions
from novaclient.v2.client import Client as NovaClient
from novaclient.v2.servers import Server

from tests.clients.conftest import HOSTS, nova
from tests.clients.test_novaclient_core import IMAGE, wait_for, wait_gone


@pytest.fixture
def project() -> str:
    return f"nca{uuid.uuid4().hex[:8]}"


@pytest.fixture
def admin(stratus_up: str, project: str) -> NovaClient:
    return nova(stratus_up, project, "admin")


@pytest.fixture
def member(stratus_up: str, project: str) -> NovaClient:
    return nova(stratus_up, project, "alice")


@pytest.fixture
def server(member: NovaClient) -> Iterator[Server]:
    created = member.servers.create("admin-actions", IMAGE, "1")
    yield wait_for(member, created.id, "ACTIVE")
    member.servers.delete(created.id)
    wait_gone(member, created.id)


def _host(admin: NovaClient, server: Server) -> str:
    host: str = getattr(admin.servers.get(server.id), "OS-EXT-SRV-ATTR:host")
    return host


def _task(client: NovaClient, server: Server) -> str | None:
    task: str | None = getattr(client.servers.get(server.id), "OS-EXT-STS:task_state")
    return task


def _idle(client: NovaClient, server: Server, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while _task(client, server) is not None:
        assert time.monotonic() < deadline, "the server never finished its task"
        time.sleep(0.05)


def test_pause_unpause_suspend_resume_by_the_owner(member: NovaClient, server: Server) -> None:
    member.servers.pause(server)
    wait_for(member, server.id, "PAUSED")
    member.servers.unpause(server)
    wait_for(member, server.id, "ACTIVE")
    member.servers.suspend(server)
    wait_for(member, server.id, "SUSPENDED")
    member.servers.resume(server)
    wait_for(member, server.id, "ACTIVE")


def test_lock_and_unlock(admin: NovaClient, member: NovaClient, server: Server) -> None:
    """The owner's own lock (nova 2013.2's default), then an administrator's, which the
    owner may not lift."""
    member.servers.lock(server)
    with pytest.raises(exceptions.Conflict):
        member.servers.reboot(server)
    member.servers.unlock(server)
    admin.servers.lock(server)
    assert getattr(admin.servers.get(server.id), "locked", True)
    with pytest.raises(exceptions.Forbidden):
        member.servers.unlock(server)
    with pytest.raises(exceptions.Conflict):
        member.servers.reboot(server)
    admin.servers.unlock(server)
    member.servers.reboot(server)
    wait_for(member, server.id, "ACTIVE")


def test_migrate_then_confirm_and_revert(admin: NovaClient, server: Server) -> None:
    source = _host(admin, server)
    admin.servers.migrate(server)
    wait_for(admin, server.id, "VERIFY_RESIZE")
    assert _host(admin, server) != source
    admin.servers.revert_resize(server)
    wait_for(admin, server.id, "ACTIVE")
    assert _host(admin, server) == source
    admin.servers.migrate(server)
    wait_for(admin, server.id, "VERIFY_RESIZE")
    admin.servers.confirm_resize(server)
    wait_for(admin, server.id, "ACTIVE")
    assert _host(admin, server) != source


def test_live_migration_moves_the_server_and_it_stays_active(
    admin: NovaClient, server: Server
) -> None:
    source = _host(admin, server)
    target = next(h for h in HOSTS if h != source)
    admin.servers.live_migrate(server, target, False, False)
    _idle(admin, server)
    moved = admin.servers.get(server.id)
    assert (moved.status, getattr(moved, "OS-EXT-SRV-ATTR:host")) == ("ACTIVE", target)


def test_network_actions(admin: NovaClient, server: Server) -> None:
    admin.servers.reset_network(server)
    response, _ = admin.client.post(
        f"/servers/{server.id}/action", body={"injectNetworkInfo": None}
    )
    assert response.status_code == 202
    _idle(admin, server)
    assert admin.servers.get(server.id).status == "ACTIVE"


def test_backup_keeps_the_rotation(member: NovaClient, server: Server) -> None:
    for i in range(3):
        member.servers.backup(server, f"nightly-{i}", "daily", 2)
        _idle(member, server)
    _, body = member.client.get(f"/images/detail?server={server.id}&type=backup")
    assert sorted(image["name"] for image in body["images"]) == ["nightly-1", "nightly-2"]


def test_reset_state(admin: NovaClient, member: NovaClient, server: Server) -> None:
    with pytest.raises(exceptions.Forbidden):
        member.servers.reset_state(server, "error")
    admin.servers.reset_state(server, "error")
    assert admin.servers.get(server.id).status == "ERROR"
    admin.servers.reset_state(server, "active")
    assert admin.servers.get(server.id).status == "ACTIVE"
