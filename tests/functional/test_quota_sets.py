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

import aiohttp
import jsonschema
import pytest
from tempest.lib.api_schema.response.compute.v2_1 import quotas as schemas

from stratus.system import System
from tests.conftest import IMAGE
from tests.support.client import ComputeClient, Reply
from tests.support.gateway import gateway_of_its_own

SAMPLES = Path(__file__).parent.parent / "samples" / "nova-2013.1" / "os-quota-sets"
XML = {"Accept": "application/xml"}
XML_BODY = {"Accept": "application/xml", "Content-Type": "application/xml"}


def _valid(schema: dict[str, object], body: object) -> None:
    jsonschema.validate(body, schema["response_body"])  # type: ignore[arg-type]


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
    assert shown.status == 200, shown
    _valid(schemas.get_quota_set, shown.body)
    sample = json.loads((SAMPLES / "quotas-show-get-resp.json").read_text())
    assert set(shown.body["quota_set"]) == set(sample["quota_set"])
    assert shown.body["quota_set"]["id"] == tenant
    defaults = await api.get(f"/os-quota-sets/{tenant}/defaults")
    assert defaults.status == 200
    _valid(schemas.get_quota_set, defaults.body)
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
    body = reply.body
    _valid(schemas.update_quota_set, body)
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
