"""nova 2013.1's os-quota-sets: showing a project's quotas and their defaults, administrators
setting them, and creates, key pairs and ``GET /limits`` honouring what they set.

The shared system runs with unlimited quotas, so the tests that count servers start a second
gateway application with quotas, on the same database and bus (as test_limits does).
"""

from __future__ import annotations

import json
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from stratus.system import System
from tests.conftest import IMAGE
from tests.support.client import ComputeClient, Reply
from tests.support.gateway import gateway_of_its_own

SAMPLES = Path(__file__).parent.parent / "samples" / "nova-2013.1" / "os-quota-sets"
XML = {"Accept": "application/xml"}
XML_BODY = {"Accept": "application/xml", "Content-Type": "application/xml"}


_gateway = gateway_of_its_own


@pytest.fixture
def admin(client_for: Callable[[str, str], ComputeClient], tenant: str) -> ComputeClient:
    return client_for(tenant, "admin")


async def _put(client: ComputeClient, project: str, quota_set: object) -> Reply:
    return await client.request("PUT", f"/os-quota-sets/{project}", {"quota_set": quota_set})


async def test_show_and_defaults_have_nova_2013_keys(
    api: ComputeClient, admin: ComputeClient, tenant: str
) -> None:
    shown = await api.get(f"/os-quota-sets/{tenant}")
    assert shown.status == 200, shown  # tempest's get_quota_set: the client checks it
    sample = json.loads((SAMPLES / "quotas-show-get-resp.json").read_text())
    assert set(shown.body["quota_set"]) == set(sample["quota_set"])
    assert shown.body["quota_set"]["id"] == tenant
    defaults = await api.get(f"/os-quota-sets/{tenant}/defaults")
    assert defaults.status == 200
    assert defaults.body == shown.body  # nothing set yet
    # nova's defaults for what Stratus does not serve
    assert defaults.body["quota_set"]["fixed_ips"] == -1
    assert defaults.body["quota_set"]["security_group_rules"] == 20
    # another project's quotas: administrators only
    other = f"t{uuid.uuid4().hex[:10]}"
    assert (await api.get(f"/os-quota-sets/{other}")).status == 403
    assert (await admin.get(f"/os-quota-sets/{other}")).status == 200


async def test_administrators_set_quotas_members_may_not(
    api: ComputeClient, admin: ComputeClient, tenant: str
) -> None:
    refused = await _put(api, tenant, {"instances": 20})
    assert refused.status == 403
    reply = await _put(admin, tenant, {"instances": 20, "cores": -1, "id": tenant})
    assert reply.status == 200, reply
    body = reply.body  # tempest's update_quota_set: the client checks it
    assert "id" not in body["quota_set"]  # as nova 2013.1 answered an update
    assert body["quota_set"]["instances"] == 20
    assert body["quota_set"]["cores"] == -1
    shown = await api.get(f"/os-quota-sets/{tenant}")
    assert shown.body["quota_set"]["instances"] == 20
    defaults = await api.get(f"/os-quota-sets/{tenant}/defaults")
    assert defaults.body["quota_set"]["instances"] != 20  # the defaults stay the settings'
    for bad in ({"bogus": 1}, {"instances": -2}, {"instances": "many"}):
        answer = await _put(admin, tenant, bad)
        assert answer.status == 400, (bad, answer)
    assert (await admin.get(f"/os-quota-sets/{tenant}")).body["quota_set"]["instances"] == 20
    # nova 2013.1 had no DELETE (it came in 2013.2)
    assert (await admin.delete(f"/os-quota-sets/{tenant}")).status in (404, 405)


async def test_xml_shapes_follow_nova_samples(
    api: ComputeClient, admin: ComputeClient, tenant: str
) -> None:
    reply = await api.request("GET", f"/os-quota-sets/{tenant}", headers=XML)
    assert reply.status == 200
    root = ET.fromstring(reply.body)
    sample = ET.fromstring((SAMPLES / "quotas-show-get-resp.xml").read_bytes())
    assert root.tag == sample.tag == "quota_set"
    assert root.attrib == {"id": tenant}
    assert [child.tag for child in root] == [child.tag for child in sample]
    defaults = await api.request("GET", f"/os-quota-sets/{tenant}/defaults", headers=XML)
    assert [c.tag for c in ET.fromstring(defaults.body)] == [c.tag for c in sample]
    request = (SAMPLES / "quotas-update-post-req.xml").read_bytes()
    updated = await admin.request("PUT", f"/os-quota-sets/{tenant}", headers=XML_BODY, data=request)
    assert updated.status == 200, updated
    root = ET.fromstring(updated.body)
    expected = ET.fromstring((SAMPLES / "quotas-update-post-resp.xml").read_bytes())
    assert root.tag == "quota_set" and root.attrib == {}
    assert [c.tag for c in root] == [c.tag for c in expected]
    assert root.findtext("security_groups") == "45"


async def test_creates_and_limits_honour_a_projects_quotas(
    system: System, tmp_path: Path, http: aiohttp.ClientSession, tenant: str
) -> None:
    async with _gateway(system, tmp_path, quota_instances=1) as url:
        member = ComputeClient(http, url, tenant, "alice")
        admin = ComputeClient(http, url, tenant, "admin")
        limits = (await member.get("/limits")).body["limits"]["absolute"]
        assert limits["maxTotalInstances"] == 1
        assert (await _put(admin, tenant, {"instances": 2, "cores": 7})).status == 200
        limits = (await member.get("/limits")).body["limits"]["absolute"]
        assert limits["maxTotalInstances"] == 2
        assert limits["maxTotalCores"] == 7
        created = []
        for n in range(2):  # more than the default of 1
            reply = await member.create_server(f"q{n}", IMAGE)
            assert reply.status == 202, reply
            created.append(reply.body["server"]["id"])
        refused = await member.create_server("q2", IMAGE)
        assert refused.status == 413, refused
        assert "instances" in refused.body["overLimit"]["message"]
        # a project given fewer than the default gets 413 on its first create
        fewer = f"t{uuid.uuid4().hex[:10]}"
        assert (await _put(admin, fewer, {"instances": 0})).status == 200
        starved = ComputeClient(http, url, fewer, "alice")
        assert (await starved.create_server("none", IMAGE)).status == 413
        for server_id in created:
            await member.delete_and_wait(server_id)


async def test_key_pairs_quota_of_the_project_applies_to_its_users(
    api: ComputeClient, admin: ComputeClient, tenant: str
) -> None:
    user = f"u{uuid.uuid4().hex[:8]}"
    client = ComputeClient(api.session, api.url, tenant, user)
    assert (await _put(admin, tenant, {"key_pairs": 1})).status == 200
    assert (await client.get("/limits")).body["limits"]["absolute"]["maxTotalKeypairs"] == 1
    first = await client.post("/os-keypairs", {"keypair": {"name": "one"}})
    assert first.status == 200, first
    second = await client.post("/os-keypairs", {"keypair": {"name": "two"}})
    assert second.status == 413, second


#: Per-request limits an administrator sets below the settings' defaults (128, 5, 10240, 255).
_SMALL = {
    "metadata_items": 2,
    "injected_files": 1,
    "injected_file_content_bytes": 10,
    "injected_file_path_bytes": 8,
}
_TEN_BYTES, _ELEVEN_BYTES = "MDEyMzQ1Njc4OQ==", "MDEyMzQ1Njc4OTA="


async def _servers_of(system: System, tenant: str) -> int:
    assert system.pool is not None
    count = await system.pool.fetchval("SELECT count(*) FROM servers WHERE tenant_id = $1", tenant)
    return int(count)


async def test_per_request_overrides_limit_creates_and_show_in_limits(
    api: ComputeClient, admin: ComputeClient, system: System, tenant: str
) -> None:
    assert (await _put(admin, tenant, _SMALL)).status == 200
    absolute = (await api.get("/limits")).body["limits"]["absolute"]
    assert {key: absolute[key] for key in ("maxServerMeta", "maxImageMeta")} == {
        "maxServerMeta": 2,
        "maxImageMeta": 2,
    }
    assert (absolute["maxPersonality"], absolute["maxPersonalitySize"]) == (1, 10)
    as_xml = await api.request("GET", "/limits", headers=XML)
    xml_limits = {
        e.attrib["name"]: e.attrib["value"]
        for e in ET.fromstring(as_xml.body).iter()
        if e.tag.endswith("}limit") and "name" in e.attrib
    }
    assert xml_limits["maxServerMeta"] == "2" and xml_limits["maxPersonality"] == "1"
    # another project keeps the settings' limits
    other = ComputeClient(api.session, api.url, f"t{uuid.uuid4().hex[:10]}", "alice")
    assert (await other.get("/limits")).body["limits"]["absolute"]["maxServerMeta"] == 128

    refused: list[tuple[dict[str, Any], str]] = [
        (
            {"metadata": {"a": "1", "b": "2", "c": "3"}},
            "Maximum number of metadata items exceeds 2",
        ),
        ({"personality": [{"path": "/a", "contents": _TEN_BYTES}] * 2}, "file limit exceeded"),
        ({"personality": [{"path": "/etc/motd", "contents": _TEN_BYTES}]}, "path too long"),
        ({"personality": [{"path": "/a", "contents": _ELEVEN_BYTES}]}, "content too long"),
    ]
    for extra, message in refused:
        reply = await api.create_server("too-much", IMAGE, **extra)
        assert reply.status == 413, (extra, reply)
        assert message in reply.body["overLimit"]["message"], reply
        assert reply.headers["Retry-After"] == "0"
    assert await _servers_of(system, tenant) == 0

    at_the_limits = await api.create_server(
        "just-fits",
        IMAGE,
        metadata={"a": "1", "b": "2"},
        personality=[{"path": "/etc/ab", "contents": _TEN_BYTES}],
    )
    assert at_the_limits.status == 202, at_the_limits
    await api.delete_and_wait(at_the_limits.body["server"]["id"])


async def test_metadata_edits_honour_the_projects_metadata_items(
    api: ComputeClient, admin: ComputeClient, system: System, tenant: str
) -> None:
    """Server and image metadata alike (nova 2013.1 checked both against ``metadata_items``),
    and the server actions that set metadata (rebuild, createImage)."""
    reply = await api.create_server("meta", IMAGE, metadata={"a": "1"})
    server_id = reply.body["server"]["id"]
    await api.wait_for_status(server_id, "ACTIVE")
    assert system.pool is not None
    image = uuid.uuid4()
    await system.pool.execute(
        "INSERT INTO images (id, name, status, progress, owner, is_public)"
        " VALUES ($1, 'own', 'active', 100, $2, false)",
        image,
        tenant,
    )
    assert (await _put(admin, tenant, {"metadata_items": 2})).status == 200
    three = {"a": "1", "b": "2", "c": "3"}
    for path in (f"/servers/{server_id}/metadata", f"/images/{image}/metadata"):
        assert (await api.request("PUT", path, {"metadata": {"a": "1", "b": "2"}})).status == 200
        for method, where, body in (
            ("POST", path, {"metadata": {"c": "3"}}),
            ("PUT", path, {"metadata": three}),
            ("PUT", f"{path}/c", {"meta": {"c": "3"}}),
        ):
            over = await api.request(method, where, body)
            assert over.status == 413, (method, where, over)
            assert "Maximum number of metadata items exceeds 2" in over.body["overLimit"]["message"]
        # replacing an item and deleting one stay possible
        assert (await api.request("PUT", f"{path}/a", {"meta": {"a": "x"}})).status == 200
        assert (await api.get(path)).body == {"metadata": {"a": "x", "b": "2"}}

    action = f"/servers/{server_id}/action"
    bodies: list[dict[str, Any]] = [
        {"createImage": {"name": "snap", "metadata": three}},
        {"rebuild": {"imageRef": IMAGE, "metadata": three}},
    ]
    for body in bodies:
        over = await api.post(action, body)
        assert over.status == 413, (body, over)
    assert (await api.get(f"/servers/{server_id}")).body["server"]["status"] == "ACTIVE"

    # a raised override lets the third item in
    assert (await _put(admin, tenant, {"metadata_items": 3})).status == 200
    path = f"/servers/{server_id}/metadata"
    assert (await api.post(path, {"metadata": {"c": "3"}})).status == 200
    assert (await api.get("/limits")).body["limits"]["absolute"]["maxServerMeta"] == 3
    await api.delete_and_wait(server_id)
    await system.pool.execute("DELETE FROM images WHERE id = $1", image)
