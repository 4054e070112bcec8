"""Metadata edits (guide 2.6.2–2.6.6): what each does to a set, the item limit, and the
XML documents of metadata and addresses (Ex 2.49, 2.59, 2.21)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from api_gateway.compute.metadata import DeleteItem, Merge, ReplaceAll, SetItem, edited
from api_gateway.http.faults import BadRequest, OverLimit
from api_gateway.http.serializers.xml import document
from api_gateway.schemas.metadata import MetaItemBody
from shared.errors import NotFound

CURRENT = {"Label": "Web", "Version": "2.1"}
NS = "{http://docs.openstack.org/compute/api/v1.1}"


def _settings(limit: int) -> dict[str, int]:
    """The project's quota set, as far as metadata edits read it."""
    return {"metadata_items": limit}


def test_each_edit_as_the_guide_describes_it() -> None:
    settings = _settings(10)
    assert edited(settings, ReplaceAll({"a": "1"}), CURRENT) == {"a": "1"}
    assert edited(settings, Merge({"Label": "Web2"}), CURRENT) == {
        "Label": "Web2",
        "Version": "2.1",
    }
    assert edited(settings, SetItem("Role", "db"), CURRENT) == {**CURRENT, "Role": "db"}
    assert edited(settings, DeleteItem("Label"), CURRENT) == {"Version": "2.1"}
    with pytest.raises(NotFound, match="Metadata item was not found"):
        edited(settings, DeleteItem("absent"), CURRENT)
    assert list(edited(settings, Merge({"A": "x"}), CURRENT)) == ["A", "Label", "Version"]


def test_the_item_limit_is_checked_on_the_resulting_set() -> None:
    settings = _settings(2)
    with pytest.raises(OverLimit) as raised:
        edited(settings, Merge({"third": "x"}), CURRENT)
    assert raised.value.headers["Retry-After"] == "0"
    assert "2" in raised.value.message
    with pytest.raises(OverLimit):
        edited(settings, SetItem("third", "x"), CURRENT)
    with pytest.raises(OverLimit):
        edited(settings, ReplaceAll({"a": "1", "b": "2", "c": "3"}), {})
    assert edited(settings, SetItem("Label", "new"), CURRENT)["Label"] == "new"
    over = {"a": "1", "b": "2", "c": "3"}  # more than a lowered limit allows
    assert edited(settings, DeleteItem("a"), over) == {"b": "2", "c": "3"}
    assert len(edited(_settings(-1), ReplaceAll({str(i): "v" for i in range(500)}), {})) == 500


def test_an_item_body_must_hold_exactly_the_uri_key() -> None:
    assert MetaItemBody.model_validate({"meta": {"k": "v"}}).value_for("k") == "v"
    with pytest.raises(BadRequest, match="Request body and URI mismatch"):
        MetaItemBody.model_validate({"meta": {"other": "v"}}).value_for("k")
    with pytest.raises(BadRequest, match="Request body contains too many items"):
        MetaItemBody.model_validate({"meta": {"k": "v", "j": "w"}}).value_for("k")


def test_metadata_documents_in_xml() -> None:
    whole = ET.fromstring(document({"metadata": CURRENT}))
    assert whole.tag == f"{NS}metadata"
    assert [(m.tag, m.attrib["key"], m.text) for m in whole] == [
        (f"{NS}meta", "Label", "Web"),
        (f"{NS}meta", "Version", "2.1"),
    ]
    one = ET.fromstring(document({"meta": {"Label": "<Web & co>"}}))
    assert (one.tag, one.attrib, one.text) == (f"{NS}meta", {"key": "Label"}, "<Web & co>")
    assert list(ET.fromstring(document({"metadata": {}}))) == []


def test_addresses_documents_in_xml() -> None:
    networks = {
        "private": [{"version": 4, "addr": "10.0.0.2"}, {"version": 6, "addr": "fd00::2"}],
        "public": [{"version": 4, "addr": "67.23.10.132"}],
    }
    root = ET.fromstring(document({"addresses": networks}))
    assert root.tag == f"{NS}addresses"
    assert [(n.attrib["id"], [ip.attrib for ip in n]) for n in root] == [
        ("private", [{"version": "4", "addr": "10.0.0.2"}, {"version": "6", "addr": "fd00::2"}]),
        ("public", [{"version": "4", "addr": "67.23.10.132"}]),
    ]
    one = ET.fromstring(document({"network": {"id": "public", "ip": networks["public"]}}))
    assert (one.tag, one.attrib) == (f"{NS}network", {"id": "public"})
    assert [(ip.tag, ip.attrib["addr"]) for ip in one] == [(f"{NS}ip", "67.23.10.132")]
    assert list(ET.fromstring(document({"addresses": {}}))) == []
