"""XML request bodies turned into the JSON shape, so one pydantic schema checks both.

Parsed with defusedxml: DTDs, entity declarations and external references are refused, so
entity expansion ("billion laughs") and external entity tricks cannot happen. Namespaces are
ignored, as the reference implementation ignored them, except that an attribute of a known
extension's namespace keeps the extension's alias (``OS-DCF:diskConfig``, as in JSON).

The mapping follows the guide's samples: the root element names the single top-level member;
attributes are members; ``<metadata>`` of ``<meta key>`` is an object; ``<personality>`` of
``<file path>`` a list; a child with only text is a string member (the admin actions put their
parameters there); an empty element is ``null`` (``<confirmResize/>``). Flavor extra specs
come as nova's ``<extra_specs><key1>value1</key1></extra_specs>`` or, for a key that is no
element name, ``<extra_spec key="hw:cpu_policy">dedicated</extra_spec>`` (inside
``<extra_specs>``, or alone as one key's update).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import defusedxml.ElementTree
from defusedxml import DefusedXmlException


class MalformedXml(ValueError):
    """The body is not XML we accept; the message says why, for a 400."""


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


#: Extension namespaces whose attributes keep their alias, as the JSON member is spelt
#: (``OS-DCF:diskConfig``): the schemas know them by that name.
_ALIASES = {"http://docs.openstack.org/compute/ext/disk_config/api/v1.1": "OS-DCF"}


def _attribute(name: str) -> str:
    namespace, _, local = name[1:].partition("}") if name.startswith("{") else ("", "", name)
    alias = _ALIASES.get(namespace)
    return f"{alias}:{local}" if alias else local


def _metadata(element: ET.Element) -> dict[str, str]:
    return {meta.get("key", ""): meta.text or "" for meta in element if _local(meta.tag) == "meta"}


def _beside_metadata(element: ET.Element) -> dict[str, Any]:
    """What a ``<metadata>`` document holds besides its ``<meta>`` items: the root's attributes
    and other children, as members beside ``metadata`` (which the schema refuses by name)."""
    beside: dict[str, Any] = {_attribute(k): v for k, v in element.attrib.items()}
    for child in element:
        if _local(child.tag) != "meta":
            beside[_local(child.tag)] = _value(child)
    return beside


def _personality(element: ET.Element) -> list[dict[str, str]]:
    return [
        {"path": item.get("path", ""), "contents": "".join((item.text or "").split())}
        for item in element
        if _local(item.tag) == "file"
    ]


def _extra_spec(element: ET.Element) -> tuple[str, Any]:
    """One extra spec: ``<extra_spec key="k">v</extra_spec>`` or nova's ``<k>v</k>``; its text
    as sent (nova's deserializer did not strip it). An element holding more than text is
    given as its mapping, which the schema then refuses."""
    attributes = dict(element.attrib)
    name = _local(element.tag)
    if name == "extra_spec" and "key" in attributes:
        name = attributes.pop("key")
    if attributes or len(element):
        return name, _value(element)
    return name, element.text or ""


def _extra_specs(element: ET.Element) -> dict[str, Any]:
    return dict(_extra_spec(child) for child in element)


def _value(element: ET.Element) -> Any:
    children = list(element)
    text = (element.text or "").strip()
    if not element.attrib and not children:
        return text or None
    value: dict[str, Any] = {_attribute(name): v for name, v in element.attrib.items()}
    for child in children:
        name = _local(child.tag)
        if name == "metadata":
            value[name] = _metadata(child)
        elif name == "personality":
            value[name] = _personality(child)
        else:
            value[name] = _value(child)
    return value


def parse(body: bytes) -> dict[str, Any]:
    """``{root: value}`` for an XML document; raises ``MalformedXml``."""
    try:
        root = defusedxml.ElementTree.fromstring(
            body, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except DefusedXmlException as exc:
        raise MalformedXml(f"XML with a DTD or entities is not accepted: {exc}") from None
    except ET.ParseError as exc:
        raise MalformedXml(f"Malformed XML request body: {exc}") from None
    name = _local(root.tag)
    if name == "metadata":
        return {name: _metadata(root), **_beside_metadata(root)}
    if name == "meta":
        attributes = {_attribute(k): v for k, v in root.attrib.items() if k != "key"}
        return {name: {root.get("key", ""): root.text or ""}, **attributes}
    if name == "extra_specs":
        return {name: _extra_specs(root)}
    if name == "extra_spec":
        return dict([_extra_spec(root)])
    return {name: _value(root)}
