"""GET /extensions and /extensions/{alias} in JSON and XML (guide 1.8, Ex 1.34–1.37)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from api_gateway.http.serializers import xml
from api_gateway.views.extensions import EXTENSIONS
from tests.support.client import ComputeClient

COMMON_NS = "{http://docs.openstack.org/common/api/v1.0}"
COMPUTE_NS = "{http://docs.openstack.org/compute/api/v1.1}"
XML = {"Accept": "application/xml"}

#: Members of an extension in Ex 1.35/1.37.
MEMBERS = {"name", "namespace", "alias", "updated", "description", "links"}

ADMIN_ACTIONS = {
    "name": "AdminActions",
    "namespace": "http://docs.openstack.org/compute/ext/admin-actions/api/v1.1",
    "alias": "os-admin-actions",
    "updated": "2011-09-20T00:00:00+00:00",
    "links": [],
}


async def test_the_list_names_every_extension_in_alias_order(api: ComputeClient) -> None:
    reply = await api.get("/extensions")
    assert reply.status == 200
    assert set(reply.body) == {"extensions"}
    listed = reply.body["extensions"]
    assert all(set(extension) == MEMBERS for extension in listed)
    aliases = [extension["alias"] for extension in listed]
    assert aliases == sorted(e.alias for e in EXTENSIONS)
    assert {"os-admin-actions", "os-used-limits"} <= set(aliases)
    admin = next(e for e in listed if e["alias"] == "os-admin-actions")
    assert {k: v for k, v in admin.items() if k != "description"} == ADMIN_ACTIONS
    assert admin["description"].startswith("Enable admin-only server actions")


async def test_one_extension_by_alias(api: ComputeClient) -> None:
    reply = await api.get("/extensions/os-admin-actions")
    assert reply.status == 200
    assert set(reply.body) == {"extension"}
    assert set(reply.body["extension"]) == MEMBERS
    assert {k: v for k, v in reply.body["extension"].items() if k != "description"} == (
        ADMIN_ACTIONS
    )
    assert (await api.get("/extensions/os-used-limits.json")).body["extension"]["name"] == (
        "UsedLimits"
    )


async def test_an_unknown_alias_is_not_found(api: ComputeClient) -> None:
    reply = await api.get("/extensions/RAX-PIE")
    assert reply.status == 404
    assert reply.body["itemNotFound"]["code"] == 404
    in_xml = await api.request("GET", "/extensions/RAX-PIE", headers=XML)
    assert in_xml.status == 404
    assert ET.fromstring(in_xml.body).tag == f"{COMPUTE_NS}itemNotFound"


def _assert_extension_element(element: ET.Element) -> None:
    """Ex 1.34/1.36: name, namespace, alias, updated as attributes; description as text."""
    assert element.tag == f"{COMMON_NS}extension"
    assert set(element.attrib) == {"name", "namespace", "alias", "updated"}
    assert [child.tag for child in element] == [f"{COMMON_NS}description"]
    assert element.findtext(f"{COMMON_NS}description")


async def test_the_list_in_xml_has_the_shape_of_ex_1_34(api: ComputeClient) -> None:
    for reply in (
        await api.get("/extensions.xml"),
        await api.request("GET", "/extensions", headers=XML),
    ):
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("application/xml")
        root = ET.fromstring(reply.body)
        assert root.tag == f"{COMMON_NS}extensions"
        assert len(root) == len(EXTENSIONS)
        for element in root:
            _assert_extension_element(element)
        admin = root.find(f"{COMMON_NS}extension[@alias='os-admin-actions']")
        assert admin is not None
        assert admin.attrib["namespace"] == ADMIN_ACTIONS["namespace"]
        assert admin.attrib["name"] == "AdminActions"


async def test_one_extension_in_xml_has_the_shape_of_ex_1_36(api: ComputeClient) -> None:
    reply = await api.get("/extensions/os-admin-actions.xml")
    assert reply.status == 200
    root = ET.fromstring(reply.body)
    _assert_extension_element(root)
    assert root.attrib["updated"] == "2011-09-20T00:00:00+00:00"


def test_registered_aliases_serialize_their_members_in_the_extensions_namespace() -> None:
    for extension in EXTENSIONS:
        assert xml.EXTENSION_NAMESPACES[extension.alias] == extension.namespace
    used = next(e for e in EXTENSIONS if e.alias == "os-used-limits")
    document = xml.document({"server": {"id": "1", "os-used-limits:shown": "yes"}})
    server = ET.fromstring(document)
    assert server.attrib[f"{{{used.namespace}}}shown"] == "yes"
