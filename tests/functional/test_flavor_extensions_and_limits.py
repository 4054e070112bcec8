"""Issue 13: flavors as nova 2013.1 showed them with its flavor extensions, and the absolute
limits today's clients require, checked against tempest's published v2.1 response schemas."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET

from shared.db import flavors
from stratus.system import System
from tests.conftest import IMAGE
from tests.support.client import ComputeClient

COMMON_NS = "{http://docs.openstack.org/common/api/v1.0}"
COMPUTE_NS = "{http://docs.openstack.org/compute/api/v1.1}"
XML = {"Accept": "application/xml"}

ACCESS = "{http://docs.openstack.org/compute/ext/flavor_access/api/v2}is_public"
DISABLED = "{http://docs.openstack.org/compute/ext/flavor_disabled/api/v1.1}disabled"
EPHEMERAL = "{http://docs.openstack.org/compute/ext/flavor_extra_data/api/v1.1}ephemeral"

#: nova 2013.1's m1.tiny with every flavor extension loaded
TINY_EXTENSIONS = {
    "swap": "",
    "rxtx_factor": 1.0,
    "OS-FLV-EXT-DATA:ephemeral": 0,
    "os-flavor-access:is_public": True,
    "OS-FLV-DISABLED:disabled": False,
}


async def test_flavor_reads_pass_tempests_schemas(api: ComputeClient) -> None:
    """list_flavors, list_flavors_details, create_update_get_flavor_details: the client
    checks every answer against tempest's schema of its call (tests/support/schemas.py)."""
    listed = await api.get("/flavors")
    assert listed.status == 200
    detail = await api.get("/flavors/detail")
    assert detail.status == 200
    paged = await api.get("/flavors/detail?limit=1")
    assert paged.status == 200
    assert "flavors_links" in paged.body
    shown = await api.get("/flavors/1")
    assert shown.status == 200

    tiny = shown.body["flavor"]
    assert {k: tiny[k] for k in TINY_EXTENSIONS} == TINY_EXTENSIONS
    assert all(
        {k: f[k] for k in TINY_EXTENSIONS} == TINY_EXTENSIONS for f in detail.body["flavors"]
    )
    # the plain list stays id, name, links
    assert all(set(f) == {"id", "name", "links"} for f in listed.body["flavors"])


async def test_flavor_extension_attributes_in_xml(api: ComputeClient) -> None:
    shown = await api.request("GET", "/flavors/1", headers=XML)
    assert shown.status == 200
    flavor = ET.fromstring(shown.body)
    assert flavor.tag == f"{COMPUTE_NS}flavor"
    expected = {"swap": "", "rxtx_factor": "1.0", EPHEMERAL: "0", ACCESS: "True"}
    assert {k: flavor.get(k) for k in expected} == expected
    assert flavor.get(DISABLED) == "False"

    listed = await api.request("GET", "/flavors/detail", headers=XML)
    flavors = ET.fromstring(listed.body).findall(f"{COMPUTE_NS}flavor")
    assert flavors and all(f.get(ACCESS) == "True" and f.get("swap") == "" for f in flavors)


async def test_the_flavor_extensions_are_listed(api: ComputeClient) -> None:
    listed = {e["alias"]: e for e in (await api.get("/extensions")).body["extensions"]}
    expected = {
        "OS-FLV-EXT-DATA": (
            "FlavorExtraData",
            "http://docs.openstack.org/compute/ext/flavor_extra_data/api/v1.1",
        ),
        "os-flavor-access": (
            "FlavorAccess",
            "http://docs.openstack.org/compute/ext/flavor_access/api/v2",
        ),
        "OS-FLV-DISABLED": (
            "FlavorDisabled",
            "http://docs.openstack.org/compute/ext/flavor_disabled/api/v1.1",
        ),
        "os-flavor-rxtx": (
            "FlavorRxtx",
            "http://docs.openstack.org/compute/ext/flavor_rxtx/api/v1.1",
        ),
        "os-flavor-swap": (
            "FlavorSwap",
            "http://docs.openstack.org/compute/ext/flavor_swap/api/v1.1",
        ),
    }
    assert {a: (listed[a]["name"], listed[a]["namespace"]) for a in expected} == expected


#: what nova's defaults are for resources Stratus does not serve
UNSERVED = {
    "maxSecurityGroups": 10,
    "maxSecurityGroupRules": 20,
    "maxTotalFloatingIps": 10,
    "maxServerGroups": 10,
    "maxServerGroupMembers": 10,
    "totalSecurityGroupsUsed": 0,
    "totalFloatingIpsUsed": 0,
    "totalServerGroupsUsed": 0,
}


async def test_limits_pass_tempests_schema(api: ComputeClient) -> None:
    reply = await api.get("/limits")
    assert reply.status == 200  # and tempest's get_limit (the client checks)
    absolute = reply.body["limits"]["absolute"]
    assert {k: absolute[k] for k in UNSERVED} == UNSERVED
    assert absolute["maxTotalKeypairs"] == 100

    in_xml = await api.request("GET", "/limits", headers=XML)
    assert in_xml.status == 200
    root = ET.fromstring(in_xml.body)
    shown = {
        limit.get("name"): limit.get("value")
        for limit in root.findall(f"{COMMON_NS}absolute/{COMMON_NS}limit")
    }
    assert {k: shown[k] for k in UNSERVED} == {k: str(v) for k, v in UNSERVED.items()}
    assert shown["maxTotalKeypairs"] == "100"


async def test_a_disabled_flavor_builds_and_resizes_nothing(
    api: ComputeClient, system: System
) -> None:
    assert system.pool is not None
    flavor_id = f"disabled-{uuid.uuid4().hex[:8]}"
    await flavors.create(
        system.pool, flavor_id=flavor_id, name=flavor_id, ram_mb=64, disk_gb=1, vcpus=1
    )
    await system.pool.execute("UPDATE flavors SET disabled = true WHERE id = $1", flavor_id)
    try:
        shown = await api.get(f"/flavors/{flavor_id}")
        assert shown.body["flavor"]["OS-FLV-DISABLED:disabled"] is True
        refused = await api.create_server("on-disabled", IMAGE, flavor_id)
        assert refused.status == 400, refused
        assert refused.body["badRequest"]["message"] == (
            f"Instance type {flavor_id} could not be found."
        )

        created = await api.create_server("to-resize", IMAGE, "1")
        assert created.status == 202, created
        server_id = created.body["server"]["id"]
        await api.wait_for_status(server_id, "ACTIVE")
        resized = await api.post(
            f"/servers/{server_id}/action", {"resize": {"flavorRef": flavor_id}}
        )
        assert resized.status == 400, resized
        assert resized.body["badRequest"]["message"] == "Unable to locate requested flavor."
        assert (await api.get(f"/servers/{server_id}")).body["server"]["status"] == "ACTIVE"
        await api.delete_and_wait(server_id)
    finally:
        await flavors.mark_deleted(system.pool, flavor_id)
