"""The audit trail as nova's os-instance-actions extension: every action on a server, with the
request id its response carried, in JSON and XML, to the owner or an administrator."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable

import pytest

from stratus.system import System
from tests.conftest import IMAGE
from tests.support.actions import act, active_server, wait_until_action_done
from tests.support.client import ComputeClient

COMPUTE = "{http://docs.openstack.org/compute/api/v1.1}"
XML = {"Accept": "application/xml"}
MEMBERS = {
    "action",
    "instance_uuid",
    "request_id",
    "user_id",
    "project_id",
    "start_time",
    "message",
}


@pytest.fixture
def admin(client_for: Callable[[str, str], ComputeClient], tenant: str) -> ComputeClient:
    return client_for(tenant, "admin")


async def _server_with_history(
    api: ComputeClient, admin: ComputeClient, system: System
) -> tuple[str, dict[str, str]]:
    """A server that was created, hard-rebooted by its owner and locked by an administrator;
    and the request id of each of those requests, by action."""
    created = await api.create_server("audited", IMAGE)
    server_id = created.body["server"]["id"]
    await api.wait_for_status(server_id, "ACTIVE")
    reboot = await act(api, server_id, {"reboot": {"type": "HARD"}})
    await wait_until_action_done(system.pool, server_id)
    lock = await act(admin, server_id, {"lock": None})
    ids = {
        "create": created.headers["X-Compute-Request-Id"],
        "reboot": reboot.headers["X-Compute-Request-Id"],
        "lock": lock.headers["X-Compute-Request-Id"],
    }
    return server_id, ids


async def test_the_list_shows_every_action_newest_first_with_its_request_id(
    api: ComputeClient, admin: ComputeClient, system: System
) -> None:
    server_id, ids = await _server_with_history(api, admin, system)
    reply = await api.get(f"/servers/{server_id}/os-instance-actions")
    assert reply.status == 200
    listed = reply.body["instanceActions"]
    assert all(set(action) == MEMBERS for action in listed)
    assert [(a["action"], a["request_id"], a["user_id"]) for a in listed] == [
        ("lock", ids["lock"], "admin"),
        ("reboot", ids["reboot"], "alice"),  # a HARD reboot is the reboot action
        ("create", ids["create"], "alice"),
    ]
    assert {(a["instance_uuid"], a["project_id"], a["message"]) for a in listed} == {
        (server_id, api.tenant, None)
    }
    assert all(a["start_time"].endswith("Z") for a in listed)
    assert (await act(admin, server_id, {"unlock": None})).status == 202
    await api.delete_and_wait(server_id)


async def test_one_action_by_request_id_with_events_for_administrators(
    api: ComputeClient, admin: ComputeClient, system: System
) -> None:
    server_id, ids = await _server_with_history(api, admin, system)
    path = f"/servers/{server_id}/os-instance-actions/{ids['reboot']}"
    mine = (await api.get(path)).body["instanceAction"]
    assert set(mine) == MEMBERS
    assert (mine["action"], mine["request_id"]) == ("reboot", ids["reboot"])
    theirs = (await admin.get(path)).body["instanceAction"]
    (event,) = theirs.pop("events")
    assert theirs == mine
    assert (event["event"], event["result"], event["traceback"]) == ("reboot", "Success", None)
    assert event["start_time"] <= event["finish_time"]
    assert (await api.get(f"{path}.json")).body["instanceAction"] == mine
    assert (await act(admin, server_id, {"unlock": None})).status == 202
    await api.delete_and_wait(server_id)


async def test_the_trail_in_xml(api: ComputeClient, admin: ComputeClient, system: System) -> None:
    server_id, ids = await _server_with_history(api, admin, system)
    listed = ET.fromstring(
        (await api.request("GET", f"/servers/{server_id}/os-instance-actions", headers=XML)).body
    )
    assert listed.tag == f"{COMPUTE}instanceActions"
    assert [a.get("action") for a in listed] == ["lock", "reboot", "create"]
    assert all(a.tag == f"{COMPUTE}instanceAction" for a in listed)
    assert listed[1].get("request_id") == ids["reboot"]
    assert listed[1].get("instance_uuid") == server_id

    one = ET.fromstring(
        (
            await admin.request(
                "GET", f"/servers/{server_id}/os-instance-actions/{ids['lock']}.xml"
            )
        ).body
    )
    assert one.tag == f"{COMPUTE}instanceAction"
    assert (one.get("action"), one.get("user_id")) == ("lock", "admin")
    events = one.find(f"{COMPUTE}events")
    assert events is not None
    assert [e.get("result") for e in events] == ["Success"]
    assert (await act(admin, server_id, {"unlock": None})).status == 202
    await api.delete_and_wait(server_id)


async def test_the_message_says_what_an_action_did_or_why_it_failed(
    api: ComputeClient, admin: ComputeClient
) -> None:
    server_id = await active_server(api, "rescued", IMAGE)
    reset = await act(admin, server_id, {"os-resetState": {"state": "error"}})
    path = f"/servers/{server_id}/os-instance-actions/{reset.headers['X-Compute-Request-Id']}"
    shown = (await api.get(path)).body["instanceAction"]
    assert (shown["action"], shown["user_id"]) == ("os-resetState", "admin")
    assert shown["message"] == "vm_state active -> error"
    await api.delete_and_wait(server_id)


async def test_unknown_servers_requests_and_other_projects_are_not_found(
    api: ComputeClient, client_for: Callable[[str, str], ComputeClient]
) -> None:
    server_id = await active_server(api, "private", IMAGE)
    assert (await api.get(f"/servers/{uuid.uuid4()}/os-instance-actions")).status == 404
    missing = await api.get(f"/servers/{server_id}/os-instance-actions/req-{uuid.uuid4()}")
    assert (missing.status, "itemNotFound" in missing.body) == (404, True)
    stranger = client_for(f"t{uuid.uuid4().hex[:10]}", "mallory")
    assert (await stranger.get(f"/servers/{server_id}/os-instance-actions")).status == 404
    await api.delete_and_wait(server_id)
    assert (await api.get(f"/servers/{server_id}/os-instance-actions")).status == 404
