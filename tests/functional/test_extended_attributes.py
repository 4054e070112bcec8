"""The extended status (OS-EXT-STS, for everyone who sees the server) and the extended server
attributes (OS-EXT-SRV-ATTR, administrators only) in server representations, JSON and XML:
show and detail (whose render cache keeps the two views apart); never in the update and
rebuild responses, whose published schemas allow none (nova decorated only show and detail)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable

import pytest

from stratus.system import System
from tests.conftest import IMAGE
from tests.support.actions import act, active_server, wait_until_action_done
from tests.support.client import ComputeClient

HOST = "functional-host"
STS = "http://docs.openstack.org/compute/ext/extended_status/api/v1.1"
SRV = "http://docs.openstack.org/compute/ext/extended_server_attributes/api/v2"
COMPUTE = "http://docs.openstack.org/compute/api/v1.1"
XML = {"Accept": "application/xml"}

STATUS_MEMBERS = {"OS-EXT-STS:vm_state", "OS-EXT-STS:task_state", "OS-EXT-STS:power_state"}
SERVER_MEMBERS = {
    "OS-EXT-SRV-ATTR:host",
    "OS-EXT-SRV-ATTR:hypervisor_hostname",
    "OS-EXT-SRV-ATTR:instance_name",
}


@pytest.fixture
def admin(client_for: Callable[[str, str], ComputeClient], tenant: str) -> ComputeClient:
    return client_for(tenant, "admin")


def _extension_members(server: dict[str, object]) -> set[str]:
    return {key for key in server if key.startswith("OS-EXT-")}


async def test_members_see_the_states_and_administrators_also_the_host(
    api: ComputeClient, admin: ComputeClient
) -> None:
    server_id = await active_server(api, "extended", IMAGE)
    mine = (await api.get(f"/servers/{server_id}")).body["server"]
    assert _extension_members(mine) == STATUS_MEMBERS
    assert (
        mine["OS-EXT-STS:vm_state"],
        mine["OS-EXT-STS:task_state"],
        mine["OS-EXT-STS:power_state"],
    ) == ("active", None, 1)

    theirs = (await admin.get(f"/servers/{server_id}")).body["server"]
    assert _extension_members(theirs) == STATUS_MEMBERS | SERVER_MEMBERS
    assert theirs["OS-EXT-SRV-ATTR:host"] == HOST
    assert theirs["OS-EXT-SRV-ATTR:hypervisor_hostname"] == HOST
    assert theirs["OS-EXT-SRV-ATTR:instance_name"] == f"instance-{server_id}"
    await api.delete_and_wait(server_id)


async def test_in_xml_the_members_are_attributes_in_their_extensions_namespaces(
    api: ComputeClient, admin: ComputeClient
) -> None:
    server_id = await active_server(api, "extended-xml", IMAGE)
    mine = ET.fromstring((await api.request("GET", f"/servers/{server_id}", headers=XML)).body)
    assert mine.tag == f"{{{COMPUTE}}}server"
    assert mine.get(f"{{{STS}}}vm_state") == "active"
    assert mine.get(f"{{{STS}}}power_state") == "1"
    assert mine.get(f"{{{STS}}}task_state") is None  # no task: no attribute
    assert not [name for name in mine.attrib if name.startswith(f"{{{SRV}}}")]

    raw = (await admin.request("GET", f"/servers/{server_id}", headers=XML)).body
    assert f'xmlns:OS-EXT-SRV-ATTR="{SRV}"' in raw and f'xmlns:OS-EXT-STS="{STS}"' in raw
    theirs = ET.fromstring(raw)
    assert theirs.get(f"{{{SRV}}}host") == HOST
    assert theirs.get(f"{{{SRV}}}instance_name") == f"instance-{server_id}"
    await api.delete_and_wait(server_id)


@pytest.mark.parametrize("fmt", ["json", "xml"])
async def test_the_detailed_list_renders_each_view_for_its_own_callers(
    api: ComputeClient, admin: ComputeClient, fmt: str
) -> None:
    """The render cache holds both views of one server version; neither leaks into the
    other, whoever asks first."""
    server_id = await active_server(api, f"listed-{fmt}", IMAGE)
    headers = XML if fmt == "xml" else {}

    async def hosts_shown(client: ComputeClient) -> list[str | None]:
        reply = await client.request("GET", "/servers/detail", headers=headers)
        assert reply.status == 200
        if fmt == "json":
            return [s.get("OS-EXT-SRV-ATTR:host") for s in reply.body["servers"]]
        return [s.get(f"{{{SRV}}}host") for s in ET.fromstring(reply.body)]

    for _ in range(2):  # the second round is served from the cache
        assert await hosts_shown(admin) == [HOST]
        assert await hosts_shown(api) == [None]
    await api.delete_and_wait(server_id)


async def test_the_task_state_shows_while_an_action_runs(
    api: ComputeClient, system: System
) -> None:
    server_id = await active_server(api, "busy", IMAGE)
    reply = await act(api, server_id, {"rebuild": {"imageRef": IMAGE, "name": "rebuilt"}})
    assert reply.status == 202
    rebuilt = reply.body["server"]
    assert rebuilt["status"] == "REBUILD"
    assert _extension_members(rebuilt) == set()  # the rebuild's answer has none
    await api.wait_for_status(server_id, "ACTIVE")
    await wait_until_action_done(system.pool, server_id)
    await api.delete_and_wait(server_id)


async def test_update_and_rebuild_responses_carry_no_extension_members(
    api: ComputeClient, admin: ComputeClient, system: System
) -> None:
    server_id = await active_server(api, "admin-view", IMAGE)
    updated = await admin.request("PUT", f"/servers/{server_id}", {"server": {"name": "new"}})
    assert updated.status == 200
    assert _extension_members(updated.body["server"]) == set()
    member_update = await api.request("PUT", f"/servers/{server_id}", {"server": {"name": "n"}})
    assert _extension_members(member_update.body["server"]) == set()
    rebuilt = await act(admin, server_id, {"rebuild": {"imageRef": IMAGE}})
    assert rebuilt.status == 202
    assert _extension_members(rebuilt.body["server"]) == set()
    # show still has them
    shown = (await admin.get(f"/servers/{server_id}")).body["server"]
    assert _extension_members(shown) == STATUS_MEMBERS | SERVER_MEMBERS
    await api.wait_for_status(server_id, "ACTIVE")
    await wait_until_action_done(system.pool, server_id)
    await api.delete_and_wait(server_id)


async def test_the_extensions_are_listed(api: ComputeClient) -> None:
    listed = {e["alias"]: e for e in (await api.get("/extensions")).body["extensions"]}
    assert listed["OS-EXT-STS"]["name"] == "ExtendedStatus"
    assert listed["OS-EXT-STS"]["namespace"] == STS
    assert listed["OS-EXT-SRV-ATTR"]["name"] == "ExtendedServerAttributes"
    assert listed["OS-EXT-SRV-ATTR"]["namespace"] == SRV
    assert listed["os-instance-actions"]["name"] == "InstanceActions"
    one = await api.get("/extensions/OS-EXT-SRV-ATTR")
    assert (one.status, one.body["extension"]["updated"]) == (200, "2011-11-03T00:00:00+00:00")
