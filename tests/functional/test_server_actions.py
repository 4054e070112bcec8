"""The server actions of chapter 2, each carried through gateway, conductor and agent.

These run on the shared system: one host whose agent drives libvirt's test hypervisor (or
the fake one where libvirt is not installed). Resizes there stay on that one host; resizes
between hosts, and failures, are in test_server_actions_on_two_hosts.py.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest

from api_gateway.compute.specs import instance_spec
from compute_agent.virt.factory import libvirt_available
from conductor.reports import Reports
from shared import bus as bus_mod
from shared.db import seed, servers
from shared.messages import CommandReport, InstanceSpec, RebootServer
from stratus.system import System
from tests.conftest import IMAGE
from tests.support.actions import (
    COMPUTE_NS,
    FLAVORS,
    act,
    act_xml,
    actions_of,
    active_server,
    host_usage,
    migrations_of,
    plus,
    server_row,
    wait_for_image,
    wait_until_action_done,
)
from tests.support.client import ComputeClient
from tests.support.missing import LIBVIRT_BINDING

HOST = "functional-host"
DEBIAN = str(seed.image_id(seed.DEFAULT_IMAGES[1][0]))

needs_libvirt = pytest.mark.skipif(not libvirt_available(), reason=LIBVIRT_BINDING)


@pytest.fixture
def hypervisor() -> Iterator[Any]:
    """libvirt's test hypervisor, as the functional host's agent sees it (test:///default is
    one hypervisor per process): to watch domains, or to change them behind Stratus's back."""
    import libvirt

    conn = libvirt.open("test:///default")
    yield conn
    conn.close()


def _domain(hypervisor: Any, server_id: str) -> Any:
    return hypervisor.lookupByName(f"instance-{server_id}")


# --- the action resource -----------------------------------------------------------------


async def test_a_body_must_name_exactly_one_known_action(api: ComputeClient) -> None:
    server_id = await active_server(api, "bodies", IMAGE)
    two = await act(api, server_id, {"reboot": {"type": "HARD"}, "resize": {"flavorRef": "2"}})
    assert (two.status, two.body["badRequest"]["message"]) == (400, "Malformed request body")
    for body in ({}, [], "reboot", 5):
        assert (await act(api, server_id, body)).status == 400
    unknown = await act(api, server_id, {"explode": None})
    assert unknown.status == 400
    assert unknown.body["badRequest"]["message"] == "There is no such action: explode"
    unknown_xml = await act_xml(api, server_id, f'<explode xmlns="{COMPUTE_NS}"/>')
    assert unknown_xml.status == 400
    assert (await act_xml(api, server_id, "<reboot")).status == 400
    assert (await api.get(f"/servers/{server_id}")).body["server"]["status"] == "ACTIVE"
    await api.delete_and_wait(server_id)


async def test_an_unknown_server_is_not_found(api: ComputeClient) -> None:
    for server_id in (str(uuid.uuid4()), "not-a-uuid"):
        reply = await act(api, server_id, {"reboot": {"type": "SOFT"}})
        assert reply.status == 404
        assert "itemNotFound" in reply.body


async def test_another_projects_server_cannot_be_acted_on(
    api: ComputeClient, client_for: Any
) -> None:
    server_id = await active_server(api, "mine", IMAGE)
    other = client_for(f"t{uuid.uuid4().hex[:10]}", "mallory")
    assert (await act(other, server_id, {"reboot": {"type": "HARD"}})).status == 404
    assert (await act(other, server_id, {"createImage": {"name": "stolen"}})).status == 404
    await api.delete_and_wait(server_id)


# --- changePassword ------------------------------------------------------------------------


async def test_change_password_round_trip_in_json_and_xml(
    api: ComputeClient, system: System
) -> None:
    server_id = await active_server(api, "pw", IMAGE)
    reply = await act(api, server_id, {"changePassword": {"adminPass": "ss1293837$%^"}})
    assert (reply.status, reply.body) == (202, "")
    await wait_until_action_done(system.pool, server_id)
    xml = f'<changePassword xmlns="{COMPUTE_NS}" adminPass="foo"/>'
    assert (await act_xml(api, server_id, xml)).status == 202
    await wait_until_action_done(system.pool, server_id)
    assert (await api.get(f"/servers/{server_id}")).body["server"]["status"] == "ACTIVE"
    assert await actions_of(system.pool, server_id) == [
        ("create", "success"),
        ("changePassword", "success"),
        ("changePassword", "success"),
    ]
    for bad in (
        {"changePassword": {}},
        {"changePassword": None},
        {"changePassword": {"adminPass": 5}},
    ):
        assert (await act(api, server_id, bad)).status == 400
    await api.delete_and_wait(server_id)


@needs_libvirt
async def test_a_guest_that_went_down_takes_no_password_until_it_is_back(
    api: ComputeClient, hypervisor: Any, system: System
) -> None:
    server_id = await active_server(api, "pw-retry", IMAGE)
    _domain(hypervisor, server_id).destroy()  # the guest went down: its hypervisor says so
    stopped = await api.wait_for_status(server_id, "SHUTOFF")
    assert (stopped["OS-EXT-STS:vm_state"], stopped["OS-EXT-STS:power_state"]) == ("stopped", 4)
    refused = await act(api, server_id, {"changePassword": {"adminPass": "a"}})
    assert refused.status == 409

    assert (await act(api, server_id, {"reboot": {"type": "HARD"}})).status == 202
    await api.wait_for_status(server_id, "ACTIVE")
    await wait_until_action_done(system.pool, server_id)
    assert (await act(api, server_id, {"changePassword": {"adminPass": "b"}})).status == 202
    await wait_until_action_done(system.pool, server_id)
    assert (await api.get(f"/servers/{server_id}")).body["server"]["status"] == "ACTIVE"
    assert [r for _, r in await actions_of(system.pool, server_id)] == [
        "success",
        "success",
        "success",
    ]
    await api.delete_and_wait(server_id)


# --- reboot --------------------------------------------------------------------------------


@needs_libvirt
async def test_reboot_soft_and_hard_in_json_and_xml(
    api: ComputeClient, hypervisor: Any, system: System
) -> None:
    server_id = await active_server(api, "rebooter", IMAGE)
    started_as = _domain(hypervisor, server_id).ID()

    assert (await act(api, server_id, {"reboot": {"type": "SOFT"}})).status == 202
    await wait_until_action_done(system.pool, server_id)
    assert _domain(hypervisor, server_id).ID() == started_as  # the guest restarted itself

    xml = f'<reboot xmlns="{COMPUTE_NS}" type="HARD"/>'
    assert (await act_xml(api, server_id, xml)).status == 202
    await wait_until_action_done(system.pool, server_id)
    assert _domain(hypervisor, server_id).ID() != started_as  # powered off and on

    for body in ({"reboot": {"type": "hard"}}, {"reboot": {}}, {"reboot": None}):
        assert (await act(api, server_id, body)).status == 202, body
        await wait_until_action_done(system.pool, server_id)
    assert (await act_xml(api, server_id, f'<reboot xmlns="{COMPUTE_NS}"/>')).status == 202
    await wait_until_action_done(system.pool, server_id)
    assert (await api.get(f"/servers/{server_id}")).body["server"]["status"] == "ACTIVE"
    recorded = [a for a, _ in await actions_of(system.pool, server_id)]
    assert recorded == [
        "create",
        "reboot",
        "reboot_hard",
        "reboot_hard",
        "reboot",
        "reboot",
        "reboot",
    ]

    for bad in ({"reboot": {"type": "GENTLE"}}, {"reboot": {"type": 1}}):
        assert (await act(api, server_id, bad)).status == 400
    await api.delete_and_wait(server_id)


@needs_libvirt
async def test_a_hard_reboot_brings_back_a_domain_the_hypervisor_lost(
    api: ComputeClient, hypervisor: Any, system: System
) -> None:
    server_id = await active_server(api, "lost", IMAGE)
    lost = _domain(hypervisor, server_id)
    lost.destroy()
    lost.undefine()
    assert (await act(api, server_id, {"reboot": {"type": "HARD"}})).status == 202
    await wait_until_action_done(system.pool, server_id)
    assert _domain(hypervisor, server_id).isActive()
    assert (await api.get(f"/servers/{server_id}")).body["server"]["status"] == "ACTIVE"
    await api.delete_and_wait(server_id)


@needs_libvirt
async def test_a_redelivered_command_does_not_do_the_work_twice(
    api: ComputeClient, system: System, hypervisor: Any
) -> None:
    assert system.pool is not None and system.bus is not None
    server_id = await active_server(api, "twice", IMAGE)
    assert (await act(api, server_id, {"reboot": {"type": "HARD"}})).status == 202
    await wait_until_action_done(system.pool, server_id)
    rebooted_as = _domain(hypervisor, server_id).ID()
    before = (await api.get(f"/servers/{server_id}")).body["server"]

    # the very command again, as the bus would redeliver it
    action_id = await system.pool.fetchval(
        "SELECT id FROM actions WHERE server_id = $1 AND action = 'reboot_hard'",
        uuid.UUID(server_id),
    )
    spec = await _spec_of(system, server_id)
    command = RebootServer(
        server_id=uuid.UUID(server_id), action_id=action_id, instance=spec, hard=True
    )
    await system.bus.publish(bus_mod.compute_queue(HOST), command)
    # the next command for the server runs after it (one at a time, in arrival order)
    assert (await act(api, server_id, {"changePassword": {"adminPass": "x"}})).status == 202
    await wait_until_action_done(system.pool, server_id)

    assert _domain(hypervisor, server_id).ID() == rebooted_as  # not power-cycled again
    after = (await api.get(f"/servers/{server_id}")).body["server"]
    assert (after["status"], after["hostId"]) == (before["status"], before["hostId"])
    await api.delete_and_wait(server_id)


async def _spec_of(system: System, server_id: str) -> InstanceSpec:
    """The spec the gateway sends for the server (as in its reboot command)."""
    assert system.pool is not None
    async with system.pool.acquire() as conn:
        row = await servers.get(conn, uuid.UUID(server_id), None)
        assert row is not None
        return await instance_spec(conn, row)


# --- rebuild -------------------------------------------------------------------------------


async def test_rebuild_answers_with_the_server_in_rebuild_and_keeps_id_and_addresses(
    api: ComputeClient,
) -> None:
    reply = await api.create_server("before", IMAGE, "2", metadata={"old": "1"})
    server_id = reply.body["server"]["id"]
    before = await api.wait_for_status(server_id, "ACTIVE")
    image_url = f"{api.url}/v2/{api.tenant}/images/{DEBIAN}"
    reply = await act(
        api,
        server_id,
        {
            "rebuild": {
                "imageRef": image_url,
                "name": "newName",
                "adminPass": "GFf1j9aP",
                "accessIPv4": "172.19.0.1",
                "accessIPv6": "fe80::100",
                "metadata": {"My Server Name": "Apache1"},
                "personality": [{"path": "/etc/banner.txt", "contents": "aGVsbG8="}],
            }
        },
    )
    assert reply.status == 202, reply
    server = reply.body["server"]
    assert reply.headers["Location"] == server["links"][0]["href"]
    assert server["id"] == server_id
    assert (server["status"], server["progress"]) == ("REBUILD", 0)
    assert server["adminPass"] == "GFf1j9aP"
    assert server["name"] == "newName"
    assert server["metadata"] == {"My Server Name": "Apache1"}
    assert (server["accessIPv4"], server["accessIPv6"]) == ("172.19.0.1", "fe80::100")
    assert server["image"]["id"] == DEBIAN
    assert server["addresses"] == before["addresses"]

    after = await api.wait_for_status(server_id, "ACTIVE")
    assert "adminPass" not in after
    assert (after["name"], after["image"]["id"], after["progress"]) == ("newName", DEBIAN, 100)
    assert after["addresses"] == before["addresses"]
    assert after["hostId"] == before["hostId"]

    # only the image is required; the password is made up when not given
    plain = await act(api, server_id, {"rebuild": {"imageRef": IMAGE}})
    assert plain.status == 202
    assert len(plain.body["server"]["adminPass"]) >= 8
    assert plain.body["server"]["name"] == "newName"  # kept
    assert plain.body["server"]["metadata"] == {"My Server Name": "Apache1"}
    await api.wait_for_status(server_id, "ACTIVE")
    await api.delete_and_wait(server_id)


async def test_rebuild_from_an_xml_body_answers_in_xml(api: ComputeClient) -> None:
    server_id = await active_server(api, "xml-rebuild", IMAGE)
    xml = f"""<?xml version="1.0" encoding="UTF-8"?>
<rebuild xmlns="{COMPUTE_NS}" name="newName"
    imageRef="{api.url}/v2/{api.tenant}/images/{IMAGE}"
    accessIPv4="172.19.0.1" accessIPv6="fe80::100" adminPass="GFf1j9aP">
  <metadata><meta key="My Server Name">Apache1</meta></metadata>
  <personality>
    <file path="/etc/banner.txt">
        ICAgICAgDQoiQSBjbG91ZCBkb2VzIG5vdCBrbm93IHdoeSBp
        dCBtb3ZlcyBpbiBqdXN0IHN1Y2ggYSBkaXJlY3Rpb24gYW5k
    </file>
  </personality>
</rebuild>"""
    reply = await act_xml(api, server_id, xml, accept="application/xml")
    assert reply.status == 202, reply
    root = ET.fromstring(reply.body)
    assert root.tag == f"{{{COMPUTE_NS}}}server"
    assert root.get("status") == "REBUILD"
    assert root.get("adminPass") == "GFf1j9aP"
    assert root.get("name") == "newName"
    assert root.find(f"{{{COMPUTE_NS}}}metadata/{{{COMPUTE_NS}}}meta").text == "Apache1"  # type: ignore[union-attr]
    assert reply.headers["Location"].endswith(f"/v2/{api.tenant}/servers/{server_id}")
    await api.wait_for_status(server_id, "ACTIVE")
    await api.delete_and_wait(server_id)


async def test_bad_rebuilds_are_refused_and_change_nothing(api: ComputeClient) -> None:
    server_id = await active_server(api, "kept", IMAGE)  # flavor 1: 1 GB of disk
    before = (await api.get(f"/servers/{server_id}")).body["server"]
    cases = [
        ({"rebuild": {}}, 400),
        ({"rebuild": {"name": "x"}}, 400),
        ({"rebuild": {"imageRef": str(uuid.uuid4())}}, 400),  # no such image: 400, not 404
        ({"rebuild": {"imageRef": "not-a-uuid"}}, 400),
        ({"rebuild": {"imageRef": DEBIAN}}, 400),  # needs 2 GB of disk
        ({"rebuild": {"imageRef": IMAGE, "accessIPv4": "300.1.1.1"}}, 400),
        ({"rebuild": {"imageRef": IMAGE, "name": ""}}, 400),
        ({"rebuild": {"imageRef": IMAGE, "metadata": {"k" * 256: "v"}}}, 400),
        ({"rebuild": {"imageRef": IMAGE, "metadata": {f"k{i}": "v" for i in range(129)}}}, 413),
        (
            {"rebuild": {"imageRef": IMAGE, "personality": [{"path": "/x", "contents": "!!"}]}},
            400,
        ),
    ]
    for body, status in cases:
        reply = await act(api, server_id, body)
        assert reply.status == status, (body, reply)
    assert (await api.get(f"/servers/{server_id}")).body["server"] == before
    await api.delete_and_wait(server_id)


# --- resize on one host ----------------------------------------------------------------------


async def test_resize_and_confirm_on_one_host_keep_the_host_usage_exact(
    api: ComputeClient, system: System
) -> None:
    assert system.pool is not None
    start = await host_usage(system.pool, HOST)
    server_id = await active_server(api, "grows", IMAGE, "1")
    assert await host_usage(system.pool, HOST) == plus(start, FLAVORS["1"])

    assert (await act(api, server_id, {"resize": {"flavorRef": "2"}})).status == 202
    resized = await api.wait_for_status(server_id, "VERIFY_RESIZE")
    assert resized["flavor"]["id"] == "2"
    assert resized["hostId"]  # still placed
    # until confirmed, the host holds the old flavor (to revert to) and the new one
    assert await host_usage(system.pool, HOST) == plus(start, FLAVORS["1"], FLAVORS["2"])
    (migration,) = await migrations_of(system.pool, server_id)
    assert (migration["source_host"], migration["dest_host"]) == (HOST, HOST)
    assert (migration["old_flavor_id"], migration["new_flavor_id"], migration["status"]) == (
        "1",
        "2",
        "finished",
    )

    confirmed = await act(api, server_id, {"confirmResize": None})
    assert (confirmed.status, confirmed.body) == (204, None)
    active = await api.wait_for_status(server_id, "ACTIVE")
    assert active["flavor"]["id"] == "2"
    await wait_until_action_done(system.pool, server_id)
    assert await host_usage(system.pool, HOST) == plus(start, FLAVORS["2"])
    assert [m["status"] for m in await migrations_of(system.pool, server_id)] == ["confirmed"]
    row = await server_row(system.pool, server_id)
    assert (row["vcpus"], row["ram_mb"], row["disk_gb"]) == FLAVORS["2"]

    # confirmed once: nothing is left to confirm or revert
    assert (await act(api, server_id, {"confirmResize": None})).status == 409
    await api.delete_and_wait(server_id)
    assert await host_usage(system.pool, HOST) == start


async def test_resize_from_xml_and_revert_on_one_host(api: ComputeClient, system: System) -> None:
    assert system.pool is not None
    start = await host_usage(system.pool, HOST)
    server_id = await active_server(api, "tries", IMAGE, "2")
    assert (
        await act_xml(api, server_id, f'<resize xmlns="{COMPUTE_NS}" flavorRef="3"/>')
    ).status == 202
    resized = await api.wait_for_status(server_id, "VERIFY_RESIZE")
    assert resized["flavor"]["id"] == "3"
    assert await host_usage(system.pool, HOST) == plus(start, FLAVORS["2"], FLAVORS["3"])

    reverted = await act_xml(api, server_id, f'<revertResize xmlns="{COMPUTE_NS}"/>')
    assert (reverted.status, reverted.body) == (202, "")
    active = await api.wait_for_status(server_id, "ACTIVE")
    assert active["flavor"]["id"] == "2"
    await wait_until_action_done(system.pool, server_id)
    assert await host_usage(system.pool, HOST) == plus(start, FLAVORS["2"])
    assert [m["status"] for m in await migrations_of(system.pool, server_id)] == ["reverted"]
    await api.delete_and_wait(server_id)
    assert await host_usage(system.pool, HOST) == start


@needs_libvirt
async def test_the_domain_takes_the_new_flavor_and_the_old_one_back(
    api: ComputeClient, hypervisor: Any
) -> None:
    server_id = await active_server(api, "sized", IMAGE, "1")
    assert _domain(hypervisor, server_id).info()[1] == 512 * 1024  # KiB

    assert (await act(api, server_id, {"resize": {"flavorRef": "3"}})).status == 202
    await api.wait_for_status(server_id, "VERIFY_RESIZE")
    domain = _domain(hypervisor, server_id)
    assert (domain.info()[1], domain.info()[3], domain.isActive()) == (4096 * 1024, 2, True)

    assert (await act(api, server_id, {"revertResize": None})).status == 202
    await api.wait_for_status(server_id, "ACTIVE")
    domain = _domain(hypervisor, server_id)
    assert (domain.info()[1], domain.info()[3], domain.isActive()) == (512 * 1024, 1, True)
    await api.delete_and_wait(server_id)


async def test_bad_resizes_are_refused(api: ComputeClient, system: System) -> None:
    assert system.pool is not None
    start = await host_usage(system.pool, HOST)
    server_id = await active_server(api, "stays", IMAGE, "1")
    same = await act(api, server_id, {"resize": {"flavorRef": "1"}})
    assert (same.status, same.body["badRequest"]["message"]) == (
        400,
        "Resize requires a flavor change.",
    )
    for body in (
        {"resize": {"flavorRef": "999"}},
        {"resize": {"flavorRef": ""}},
        {"resize": {}},
        {"resize": None},
    ):
        assert (await act(api, server_id, body)).status == 400, body
    # a flavor given by its URL is fine
    url = f"{api.url}/v2/{api.tenant}/flavors/2"
    assert (await act(api, server_id, {"resize": {"flavorRef": url}})).status == 202
    await api.wait_for_status(server_id, "VERIFY_RESIZE")
    # no second resize while one waits for its confirmation
    assert (await act(api, server_id, {"resize": {"flavorRef": "3"}})).status == 409
    await api.delete_and_wait(server_id)
    assert await host_usage(system.pool, HOST) == start  # both claims given back


async def test_a_redelivered_report_changes_nothing(api: ComputeClient, system: System) -> None:
    assert system.pool is not None and system.bus is not None
    start = await host_usage(system.pool, HOST)
    server_id = await active_server(api, "replayed", IMAGE, "1")
    assert (await act(api, server_id, {"resize": {"flavorRef": "2"}})).status == 202
    before = await api.wait_for_status(server_id, "VERIFY_RESIZE")
    await wait_until_action_done(system.pool, server_id)
    (resize_action,) = await system.pool.fetch(
        "SELECT id FROM actions WHERE server_id = $1 AND action = 'resize'", uuid.UUID(server_id)
    )
    (migration,) = await migrations_of(system.pool, server_id)

    def report(command: str, task: str, success: bool = True) -> CommandReport:
        return CommandReport(
            server_id=uuid.UUID(server_id),
            action_id=resize_action["id"],
            host=HOST,
            command=command,
            task_state=task,
            success=success,
            power_state=1,
            migration_id=migration["id"] if task.startswith("resize_") else None,
        )

    for replayed in (
        report("migrate_disk", "resize_migrating"),
        report("finish_resize", "resize_finish"),
        report("finish_resize", "resize_finish", success=False),
        report("revert_resize", "resize_reverting"),
        report("finish_revert_resize", "resize_reverting"),
        report("confirm_resize", "resize_confirming"),
        report("snapshot_server", "image_snapshot"),
    ):
        assert await Reports(system.pool, system.bus).apply(replayed) is False
    assert (await api.get(f"/servers/{server_id}")).body["server"] == before
    assert await host_usage(system.pool, HOST) == plus(start, FLAVORS["1"], FLAVORS["2"])
    await api.delete_and_wait(server_id)
    assert await host_usage(system.pool, HOST) == start


# --- createImage -----------------------------------------------------------------------------


async def test_create_image_makes_an_active_image_at_the_location(
    api: ComputeClient, system: System
) -> None:
    server_id = await active_server(api, "source", IMAGE)
    reply = await act(
        api,
        server_id,
        {
            "createImage": {
                "name": "new-image",
                "metadata": {"ImageType": "Gold", "ImageVersion": "2.0"},
            }
        },
    )
    assert (reply.status, reply.body) == (202, "")
    location = reply.headers["Location"]
    prefix = f"{api.url}/v2/{api.tenant}/images/"
    assert location.startswith(prefix)
    image_id = location.removeprefix(prefix)

    image = await wait_for_image(api, image_id, "ACTIVE")
    assert (image["name"], image["progress"]) == ("new-image", 100)
    assert image["metadata"] == {"ImageType": "Gold", "ImageVersion": "2.0"}
    assert image["server"]["id"] == server_id
    assert (await api.get(location)).status == 200
    stored = system.settings.image_store / f"{image_id}.qcow2"
    assert stored.is_file()
    row = await system.pool.fetchrow(  # type: ignore[union-attr]
        "SELECT owner, image_type, location, size_bytes FROM images WHERE id = $1",
        uuid.UUID(image_id),
    )
    assert dict(row) == {
        "owner": api.tenant,
        "image_type": "snapshot",
        "location": f"{image_id}.qcow2",
        "size_bytes": stored.stat().st_size,
    }
    await wait_until_action_done(system.pool, server_id)
    assert (await api.get(f"/servers/{server_id}")).body["server"]["status"] == "ACTIVE"

    # the image is the project's own: another project does not see it
    other = ComputeClient(api.session, api.url, f"t{uuid.uuid4().hex[:10]}", "bob")
    assert (await other.get(f"/images/{image_id}")).status == 404
    # and a server can be built from it
    child = await active_server(api, "child", image_id)
    await api.delete_and_wait(child)
    await api.delete_and_wait(server_id)


async def test_create_image_from_xml(api: ComputeClient) -> None:
    server_id = await active_server(api, "xml-source", IMAGE)
    xml = f"""<?xml version="1.0" encoding="UTF-8"?>
<createImage xmlns="{COMPUTE_NS}" name="foo-image">
    <metadata><meta key="myvar">foobar</meta></metadata>
</createImage>"""
    reply = await act_xml(api, server_id, xml)
    assert reply.status == 202
    image = await wait_for_image(api, reply.headers["Location"].rsplit("/", 1)[1], "ACTIVE")
    assert (image["name"], image["metadata"]) == ("foo-image", {"myvar": "foobar"})
    await api.delete_and_wait(server_id)


async def test_bad_create_image_requests(api: ComputeClient, system: System) -> None:
    assert system.pool is not None
    server_id = await active_server(api, "no-image", IMAGE)
    cases = [
        ({"createImage": {}}, 400),
        ({"createImage": None}, 400),
        ({"createImage": {"name": ""}}, 400),
        ({"createImage": {"name": "x", "metadata": {"": "v"}}}, 400),
        ({"createImage": {"name": "x", "metadata": {"k" * 256: "v"}}}, 400),
        ({"createImage": {"name": "x", "metadata": {f"k{i}": "v" for i in range(129)}}}, 413),
    ]
    for body, status in cases:
        assert (await act(api, server_id, body)).status == status, body
    assert (
        await system.pool.fetchval(
            "SELECT count(*) FROM images WHERE server_id = $1", uuid.UUID(server_id)
        )
        == 0
    )
    await api.delete_and_wait(server_id)
