"""Who may do what (api_gateway/auth/policy.py; guide 3.1) and the server lock (guide 3.1 `lock`).

On the shared system. Policy overrides run on a gateway of their own (STRATUS_POLICY), on the
same database and bus, so the servers they act on are really built and changed.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from api_gateway.app import create_app
from api_gateway.auth.policy import PolicyError
from api_gateway.compute.actions.table import ACTION_TABLE
from stratus.system import System
from tests.conformance.support import SAMPLES
from tests.conftest import IMAGE
from tests.conftest import test_settings as settings_for
from tests.support.actions import act, actions_of, active_server, server_row, wait_until_action_done
from tests.support.client import ComputeClient, Reply
from tests.support.gateway import gateway_of_its_own

Clients = Callable[[str, str], ComputeClient]

#: nova 2013.1's admin-only actions, with a body each (guide 3.1); lock and unlock are the
#: owner's since nova 2013.2 (the old default through STRATUS_POLICY: ``_OLD_LOCK_POLICY``)
ADMIN_ONLY: dict[str, Any] = {
    "migrate": None,
    "resetNetwork": None,
    "injectNetworkInfo": None,
    "os-resetState": {"state": "error"},
    "os-migrateLive": {"host": "elsewhere", "block_migration": False, "disk_over_commit": False},
}


@pytest.fixture
def admin(client_for: Clients, tenant: str) -> ComputeClient:
    return client_for(tenant, "admin")


@asynccontextmanager
async def gateway(system: System, tmp: Path, policy: str) -> AsyncIterator[str]:
    """A gateway with ``policy`` as STRATUS_POLICY on the shared system's database and bus."""
    async with gateway_of_its_own(system, tmp, policy=policy) as url:
        yield url


def _fault(reply: Reply) -> tuple[int, str, str]:
    ((name, fault),) = reply.body.items()
    return reply.status, name, fault["message"]


async def _snapshot(system: System, server_id: str) -> tuple[Any, ...]:
    row = await server_row(system.pool, server_id)
    return (row["vm_state"], row["task_state"], row["locked"], row["version"])


# --- the defaults ----------------------------------------------------------------------------


async def test_members_are_forbidden_the_admin_only_actions(
    api: ComputeClient, admin: ComputeClient, system: System
) -> None:
    server_id = await active_server(api, "guarded", IMAGE)
    before = await _snapshot(system, server_id)
    for name, body in ADMIN_ONLY.items():
        if name not in ACTION_TABLE.names():  # os-migrateLive arrives with live migration
            continue
        status, fault, message = _fault(await act(api, server_id, {name: body}))
        assert (status, fault) == (403, "forbidden"), name
        assert message == f"Policy doesn't allow {name} to be performed."
    # even a bad body or an unknown server: the caller is refused before anything is read
    assert (await act(api, server_id, {"os-resetState": {"state": "x"}})).status == 403
    assert (await act(api, str(uuid.uuid4()), {"migrate": None})).status == 403
    assert await _snapshot(system, server_id) == before
    assert await actions_of(system.pool, server_id) == [("create", "success")]
    # the administrator may (acting in the member's project)
    assert (await act(admin, server_id, {"injectNetworkInfo": None})).status == 202
    await wait_until_action_done(system.pool, server_id)
    await api.delete_and_wait(server_id)


#: nova 2013.1's default for the lock (admin only), no longer the default
_OLD_LOCK_POLICY = json.dumps({"lock": "admin", "unlock": "admin"})


async def test_a_forbidden_action_is_a_fault_in_xml_too(
    system: System, http: aiohttp.ClientSession, tmp_path: Path, tenant: str
) -> None:
    # lock is the owner's by default since nova 2013.2; nova 2013.1's admin-only lock is
    # one STRATUS_POLICY away
    async with gateway(system, tmp_path, _OLD_LOCK_POLICY) as url:
        api = ComputeClient(http, url, tenant, "alice")
        server_id = await active_server(api, "xml-guarded", IMAGE)
        reply = await api.request(
            "POST",
            f"/servers/{server_id}/action",
            headers={"Content-Type": "application/xml", "Accept": "application/xml"},
            data=(SAMPLES / "3.15-lock-server-request.xml").read_bytes(),
        )
        assert reply.status == 403
        assert "<forbidden" in reply.body and 'code="403"' in reply.body
        assert (await server_row(system.pool, server_id))["locked"] is False
        await api.delete_and_wait(server_id)


async def test_the_old_admin_only_lock_is_reachable_through_the_policy_setting(
    system: System, http: aiohttp.ClientSession, tmp_path: Path, tenant: str
) -> None:
    async with gateway(system, tmp_path, _OLD_LOCK_POLICY) as url:
        alice = ComputeClient(http, url, tenant, "alice")
        admin = ComputeClient(http, url, tenant, "admin")
        server_id = await active_server(alice, "old-lock", IMAGE)
        for name in ("lock", "unlock"):
            status, fault, message = _fault(await act(alice, server_id, {name: None}))
            assert (status, fault) == (403, "forbidden"), name
            assert message == f"Policy doesn't allow {name} to be performed."
        assert (await act(admin, server_id, {"lock": None})).status == 202
        assert _fault(await act(alice, server_id, {"unlock": None}))[:2] == (403, "forbidden")
        assert (await act(admin, server_id, {"unlock": None})).status == 202
        assert await actions_of(system.pool, server_id) == [
            ("create", "success"),
            ("lock", "success"),
            ("unlock", "success"),
        ]
        await alice.delete_and_wait(server_id)


async def test_the_owner_may_pause_suspend_and_back_up(api: ComputeClient, system: System) -> None:
    server_id = await active_server(api, "owned", IMAGE)
    for body, status in (
        ({"pause": None}, "PAUSED"),
        ({"unpause": None}, "ACTIVE"),
        ({"suspend": None}, "SUSPENDED"),
        ({"resume": None}, "ACTIVE"),
    ):
        assert (await act(api, server_id, body)).status == 202, body
        await api.wait_for_status(server_id, status)
        await wait_until_action_done(system.pool, server_id)
    backup = {"createBackup": {"name": "mine", "backup_type": "daily", "rotation": 1}}
    assert (await act(api, server_id, backup)).status == 202
    await wait_until_action_done(system.pool, server_id)
    assert [result for _, result in await actions_of(system.pool, server_id)] == ["success"] * 6
    await api.delete_and_wait(server_id)


# --- the lock ------------------------------------------------------------------------------------


async def _lock(client: ComputeClient, server_id: str, sample: str) -> None:
    reply = await client.request(
        "POST",
        f"/servers/{server_id}/action",
        headers={
            "Content-Type": "application/xml" if sample.endswith("xml") else "application/json"
        },
        data=(SAMPLES / sample).read_bytes(),
    )
    assert (reply.status, reply.body) == (202, ""), reply


async def test_a_locked_server_refuses_every_change_to_members(
    api: ComputeClient, admin: ComputeClient, system: System
) -> None:
    server_id = await active_server(api, "locked", IMAGE)
    await _lock(admin, server_id, "3.15-lock-server-request.xml")
    row = await server_row(system.pool, server_id)
    assert (row["locked"], row["locked_by"]) == (True, "admin")
    before = await _snapshot(system, server_id)
    meta = f"/servers/{server_id}/metadata"
    for method, path, body in (
        ("POST", f"/servers/{server_id}/action", {"changePassword": {"adminPass": "x"}}),
        ("POST", f"/servers/{server_id}/action", {"reboot": {"type": "SOFT"}}),
        ("POST", f"/servers/{server_id}/action", {"reboot": {"type": "HARD"}}),
        ("POST", f"/servers/{server_id}/action", {"rebuild": {"imageRef": IMAGE}}),
        ("POST", f"/servers/{server_id}/action", {"resize": {"flavorRef": "2"}}),
        ("POST", f"/servers/{server_id}/action", {"confirmResize": None}),
        ("POST", f"/servers/{server_id}/action", {"revertResize": None}),
        ("POST", f"/servers/{server_id}/action", {"pause": None}),
        ("POST", f"/servers/{server_id}/action", {"unpause": None}),
        ("POST", f"/servers/{server_id}/action", {"suspend": None}),
        ("POST", f"/servers/{server_id}/action", {"resume": None}),
        ("PUT", f"/servers/{server_id}", {"server": {"name": "renamed"}}),
        ("DELETE", f"/servers/{server_id}", None),
        ("PUT", meta, {"metadata": {"k": "v"}}),
        ("POST", meta, {"metadata": {"k": "v"}}),
        ("PUT", f"{meta}/k", {"meta": {"k": "v"}}),
        ("DELETE", f"{meta}/k", None),
    ):
        reply = await api.request(method, path, body)
        assert _fault(reply) == (409, "conflictingRequest", f"Instance {server_id} is locked"), (
            method,
            path,
            body,
        )
    assert await _snapshot(system, server_id) == before
    assert [a for a, _ in await actions_of(system.pool, server_id)] == ["create", "lock"]

    # a snapshot changes nothing on the server: a lock allows it (as nova did)
    image = await act(api, server_id, {"createImage": {"name": "allowed"}})
    assert image.status == 202
    await wait_until_action_done(system.pool, server_id)
    # administrators are not affected
    assert (await act(admin, server_id, {"reboot": {"type": "SOFT"}})).status == 202
    await api.wait_for_status(server_id, "ACTIVE")
    await wait_until_action_done(system.pool, server_id)
    assert (await admin.request("PUT", f"{meta}/k", {"meta": {"k": "v"}})).status == 200

    await _lock(admin, server_id, "3.16-unlock-server-request.json")
    row = await server_row(system.pool, server_id)
    assert (row["locked"], row["locked_by"]) == (False, None)
    assert (await api.request("PUT", f"{meta}/k", {"meta": {"k": "w"}})).status == 200
    await api.delete_and_wait(server_id)


async def test_lock_and_unlock_change_no_status_and_never_reach_a_host(
    api: ComputeClient, admin: ComputeClient, system: System
) -> None:
    server_id = await active_server(api, "db-only", IMAGE)
    await _lock(admin, server_id, "3.14-lock-server-request.json")
    await _lock(admin, server_id, "3.14-lock-server-request.json")  # twice is once
    assert (await api.get(f"/servers/{server_id}")).body["server"]["status"] == "ACTIVE"
    await _lock(admin, server_id, "3.17-unlock-server-request.xml")
    await _lock(admin, server_id, "3.17-unlock-server-request.xml")
    # recorded, and finished at once: no host was asked
    assert await actions_of(system.pool, server_id) == [
        ("create", "success"),
        ("lock", "success"),
        ("lock", "success"),
        ("unlock", "success"),
        ("unlock", "success"),
    ]
    await api.delete_and_wait(server_id)


async def test_owners_lock_and_unlock_their_own_servers(
    api: ComputeClient, client_for: Clients, tenant: str, system: System
) -> None:
    """nova 2013.2: lock and unlock are the owner's; the lock records who holds it."""
    bob = client_for(tenant, "bob")
    server_id = await active_server(api, "own-lock", IMAGE)
    assert (await act(api, server_id, {"lock": None})).status == 202
    row = await server_row(system.pool, server_id)
    assert (row["locked"], row["locked_by"], row["locked_by_role"]) == (True, "alice", "owner")
    # a locked server refuses changes to members, the one who locked it included
    for body in ({"reboot": {"type": "SOFT"}}, {"pause": None}):
        assert _fault(await act(api, server_id, body))[:2] == (409, "conflictingRequest")
        assert _fault(await act(bob, server_id, body))[:2] == (409, "conflictingRequest")
    reply = await api.request("PUT", f"/servers/{server_id}", {"server": {"name": "renamed"}})
    assert reply.status == 409
    # another member neither takes it over nor lifts it
    assert (await act(bob, server_id, {"lock": None})).status == 202
    assert (await server_row(system.pool, server_id))["locked_by"] == "alice"
    assert _fault(await act(bob, server_id, {"unlock": None}))[:2] == (403, "forbidden")
    assert (await act(api, server_id, {"unlock": None})).status == 202
    row = await server_row(system.pool, server_id)
    assert (row["locked"], row["locked_by"], row["locked_by_role"]) == (False, None, None)
    assert (await act(api, server_id, {"pause": None})).status == 202
    await api.wait_for_status(server_id, "PAUSED")
    await wait_until_action_done(system.pool, server_id)
    await api.delete_and_wait(server_id)


async def test_an_owner_cannot_lift_an_administrators_lock(
    api: ComputeClient, admin: ComputeClient, system: System
) -> None:
    server_id = await active_server(api, "admin-lock", IMAGE)
    assert (await act(admin, server_id, {"lock": None})).status == 202
    row = await server_row(system.pool, server_id)
    assert (row["locked"], row["locked_by"], row["locked_by_role"]) == (True, "admin", "admin")
    # the owner's lock request leaves the administrator's lock as it is
    assert (await act(api, server_id, {"lock": None})).status == 202
    assert (await server_row(system.pool, server_id))["locked_by_role"] == "admin"
    status, fault, message = _fault(await act(api, server_id, {"unlock": None}))
    assert (status, fault) == (403, "forbidden")
    assert message == (
        f"Instance {server_id} was locked by an administrator; "
        "policy doesn't allow unlock_override to be performed."
    )
    assert (await server_row(system.pool, server_id))["locked"] is True
    assert (await act(api, server_id, {"reboot": {"type": "SOFT"}})).status == 409
    assert (await act(admin, server_id, {"unlock": None})).status == 202
    assert (await server_row(system.pool, server_id))["locked"] is False
    await api.delete_and_wait(server_id)


async def test_an_administrator_lifts_or_takes_over_an_owners_lock(
    api: ComputeClient, admin: ComputeClient, system: System
) -> None:
    server_id = await active_server(api, "lifted", IMAGE)
    assert (await act(api, server_id, {"lock": None})).status == 202
    assert (await act(admin, server_id, {"unlock": None})).status == 202
    row = await server_row(system.pool, server_id)
    assert (row["locked"], row["locked_by_role"]) == (False, None)
    assert (await act(api, server_id, {"lock": None})).status == 202
    assert (await act(admin, server_id, {"lock": None})).status == 202  # taken over
    row = await server_row(system.pool, server_id)
    assert (row["locked_by"], row["locked_by_role"]) == ("admin", "admin")
    assert _fault(await act(api, server_id, {"unlock": None}))[:2] == (403, "forbidden")
    assert (await act(admin, server_id, {"unlock": None})).status == 202
    await api.delete_and_wait(server_id)


async def test_unlock_override_is_configurable(
    system: System, http: aiohttp.ClientSession, tmp_path: Path, tenant: str
) -> None:
    policy = json.dumps({"unlock_override": "admin_or_owner"})
    async with gateway(system, tmp_path, policy) as url:
        alice = ComputeClient(http, url, tenant, "alice")
        admin = ComputeClient(http, url, tenant, "admin")
        server_id = await active_server(alice, "override", IMAGE)
        assert (await act(admin, server_id, {"lock": None})).status == 202
        assert (await act(alice, server_id, {"unlock": None})).status == 202
        assert (await server_row(system.pool, server_id))["locked"] is False
        await alice.delete_and_wait(server_id)


# --- overrides through STRATUS_POLICY ----------------------------------------------------------


async def test_the_policy_setting_changes_who_may_do_what(
    system: System, http: aiohttp.ClientSession, tmp_path: Path, tenant: str
) -> None:
    policy = json.dumps({"lock": "admin_or_owner", "unlock": "admin_or_owner", "pause": "admin"})
    async with gateway(system, tmp_path, policy) as url:
        alice = ComputeClient(http, url, tenant, "alice")
        bob = ComputeClient(http, url, tenant, "bob")
        admin = ComputeClient(http, url, tenant, "admin")
        server_id = await active_server(alice, "overridden", IMAGE)
        assert _fault(await act(alice, server_id, {"pause": None}))[:2] == (403, "forbidden")
        assert (await act(alice, server_id, {"lock": None})).status == 202
        row = await server_row(system.pool, server_id)
        assert (row["locked"], row["locked_by"]) == (True, "alice")
        # bob cannot take alice's lock over, nor lift it; she can; an administrator can too
        assert (await act(bob, server_id, {"lock": None})).status == 202
        assert (await server_row(system.pool, server_id))["locked_by"] == "alice"
        refused = await act(bob, server_id, {"unlock": None})
        assert _fault(refused)[:2] == (403, "forbidden")
        assert "only that user or an administrator" in _fault(refused)[2]
        assert (await act(bob, server_id, {"reboot": {"type": "SOFT"}})).status == 409
        assert (await act(alice, server_id, {"unlock": None})).status == 202
        assert (await act(bob, server_id, {"lock": None})).status == 202
        assert (await act(admin, server_id, {"unlock": None})).status == 202
        assert (await server_row(system.pool, server_id))["locked"] is False
        await alice.delete_and_wait(server_id)


async def test_the_policy_may_come_from_a_file_and_turn_an_action_off(
    system: System, http: aiohttp.ClientSession, tmp_path: Path, tenant: str
) -> None:
    path = tmp_path / "policy.json"
    path.write_text('{"createBackup": "!", "os-instance-actions": "rule:admin_api"}')
    async with gateway(system, tmp_path, str(path)) as url:
        admin = ComputeClient(http, url, tenant, "admin")
        member = ComputeClient(http, url, tenant, "alice")
        server_id = await active_server(member, "no-backups", IMAGE)
        backup = {"createBackup": {"name": "b", "backup_type": "daily", "rotation": 1}}
        assert (await act(admin, server_id, backup)).status == 403  # nobody: admins too
        listed = f"/servers/{server_id}/os-instance-actions"
        assert (await member.get(listed)).status == 403
        assert (await admin.get(listed)).status == 200
        await member.delete_and_wait(server_id)


@pytest.mark.parametrize("policy", ['{"lock": "everyone"}', '{"no-such-action": "admin"}', "{"])
def test_a_malformed_policy_stops_the_gateway_at_startup(tmp_path: Path, policy: str) -> None:
    with pytest.raises(PolicyError):
        create_app(settings_for(tmp_path, policy=policy))
