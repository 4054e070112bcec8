"""Structural comparison of a response with a sample of the guide.

Values that are ids, names or times may differ; structure may not: the same members (or XML
attributes and child elements) with the same types, the same link relations and link forms,
the same namespaces. Items of a list are compared with the union of the sample's items (a
member present in only some sample items is optional). ``metadata`` and ``addresses`` are maps
whose keys are data. A case may name members it knowingly adds or omits; each such choice is
written down in docs/compatibility.md.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

ATOM_LINK = "{http://www.w3.org/2005/Atom}link"
#: Members whose keys are data (labels chosen by users), not structure.
MAPS = {"metadata", "addresses", "absolute", "meta"}


def _permitted(names: frozenset[str], parent: str, key: str) -> bool:
    """``key`` of ``parent`` is named in ``names``, plainly or as ``parent.key``."""
    return key in names or f"{parent}.{key}" in names


_EXTENSION_MEMBER = re.compile(r"[A-Za-z][\w-]*:\w+")


def _extension(key: str) -> bool:
    """A member an extension adds (``alias:name`` in JSON, an attribute in the extension's
    namespace in XML): clients ignore what they do not know (guide 1.8)."""
    return key.startswith("{") or _EXTENSION_MEMBER.fullmatch(key) is not None


@dataclass(frozen=True)
class Allowances:
    extra: frozenset[str] = field(default_factory=frozenset)
    missing: frozenset[str] = field(default_factory=frozenset)
    missing_rels: frozenset[str] = field(default_factory=frozenset)
    extra_rels: frozenset[str] = field(default_factory=frozenset)


class Mismatch(AssertionError):
    pass


def _type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if value is None:
        return "null"
    return type(value).__name__


def _merge(items: Iterable[dict[str, Any]]) -> tuple[dict[str, Any], set[str]]:
    """Union shape of dict items and the members every item has."""
    union: dict[str, Any] = {}
    common: set[str] | None = None
    for entry in items:
        for key, value in entry.items():
            union.setdefault(key, value)
        common = set(entry) if common is None else common & set(entry)
    return union, common or set()


def _links(
    expected: list[dict[str, str]], actual: list[dict[str, str]], where: str, allow: Allowances
) -> None:
    want = {link["rel"] for link in expected} - allow.missing_rels
    got = {link["rel"] for link in actual}
    if not want <= got or not got <= {link["rel"] for link in expected} | allow.extra_rels:
        raise Mismatch(f"{where}: link relations {sorted(got)} != sample {sorted(want)}")
    for link in actual:
        _link_form(link["rel"], link["href"], where)


def _link_form(rel: str, href: str, where: str) -> None:
    if not href.startswith(("http://", "https://")):
        raise Mismatch(f"{where}: {rel} link {href} is not absolute")
    versioned = "/v2/" in href
    is_root = href.split("://", 1)[-1].count("/") == 1 and href.endswith("/")
    if rel == "self" and not versioned and not is_root:
        raise Mismatch(f"{where}: self link {href} is not versioned")
    if rel == "bookmark" and versioned:
        raise Mismatch(f"{where}: bookmark link {href} carries a version")
    if rel == "next" and "marker=" not in href:
        raise Mismatch(f"{where}: next link {href} has no marker")


def compare_json(
    expected: Any, actual: Any, allow: Allowances = Allowances(), where: str = ""
) -> None:
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            raise Mismatch(f"{where or 'body'}: object expected, got {_type(actual)}")
        key = where.rsplit(".", 1)[-1]
        if key in MAPS:
            _compare_map(expected, actual, allow, where)
            return
        _compare_members(expected, set(expected), actual, allow, where)
    elif isinstance(expected, list):
        if not isinstance(actual, list):
            raise Mismatch(f"{where}: array expected, got {_type(actual)}")
        if where.endswith("links"):
            _links(expected, actual, where, allow)
            return
        if expected and all(isinstance(e, dict) for e in expected):
            union, common = _merge(expected)
            for i, entry in enumerate(actual):
                if not isinstance(entry, dict):
                    raise Mismatch(f"{where}[{i}]: object expected")
                _compare_members(union, common, entry, allow, f"{where}[{i}]")
        elif expected:
            for i, entry in enumerate(actual):
                compare_json(expected[0], entry, allow, f"{where}[{i}]")
    elif _type(expected) != _type(actual):
        raise Mismatch(f"{where}: {_type(actual)} where the sample has {_type(expected)}")


def _parent(where: str) -> str:
    """The member a path ends in: ``server.image`` -> ``image``, ``servers[0]`` -> ``servers``."""
    return where.rsplit(".", 1)[-1].split("[", 1)[0]


def _compare_members(
    union: dict[str, Any], required: set[str], actual: dict[str, Any], allow: Allowances, where: str
) -> None:
    parent = _parent(where)
    missing = {k for k in required - set(actual) if not _permitted(allow.missing, parent, k)}
    extra = {
        k
        for k in set(actual) - set(union)
        if not _permitted(allow.extra, parent, k) and not _extension(k)
    }
    if missing or extra:
        raise Mismatch(f"{where or 'body'}: missing {sorted(missing)}, extra {sorted(extra)}")
    for key, value in actual.items():
        if key in union:
            compare_json(union[key], value, allow, f"{where}.{key}" if where else key)


def _compare_map(
    expected: dict[str, Any], actual: dict[str, Any], allow: Allowances, where: str
) -> None:
    if not expected:
        return  # (an empty map is a valid map: a server without metadata has {})
    sample = next(iter(expected.values()))
    for key, value in actual.items():
        if key in expected:
            compare_json(expected[key], value, allow, f"{where}[{key}]")
        else:
            compare_json(sample, value, allow, f"{where}[{key}]")


# --- XML -----------------------------------------------------------------------------------


def compare_xml(expected: bytes, actual: bytes, allow: Allowances = Allowances()) -> None:
    want = ET.fromstring(expected)
    got = ET.fromstring(actual)
    if want.tag != got.tag:
        raise Mismatch(f"root element {got.tag} where the sample has {want.tag}")
    _compare_element([want], got, allow, want.tag)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _compare_element(
    samples: list[ET.Element], element: ET.Element, allow: Allowances, where: str
) -> None:
    union_attrs = set().union(*(set(s.attrib) for s in samples))
    common_attrs = set.intersection(*(set(s.attrib) for s in samples))
    parent = _local(element.tag)
    missing = {
        a for a in common_attrs - set(element.attrib) if not _permitted(allow.missing, parent, a)
    }
    extra = {
        a
        for a in set(element.attrib) - union_attrs
        if not _permitted(allow.extra, parent, a) and not _extension(a)
    }
    if missing or extra:
        raise Mismatch(f"{where}: attributes missing {sorted(missing)}, extra {sorted(extra)}")
    _compare_children(samples, element, allow, where)


def _children_by_tag(elements: Iterable[ET.Element]) -> dict[str, list[ET.Element]]:
    grouped: dict[str, list[ET.Element]] = {}
    for element in elements:
        for child in element:
            grouped.setdefault(child.tag, []).append(child)
    return grouped


def _compare_children(
    samples: list[ET.Element], element: ET.Element, allow: Allowances, where: str
) -> None:
    sample_children = _children_by_tag(samples)
    actual_children = _children_by_tag([element])
    if ATOM_LINK in sample_children or ATOM_LINK in actual_children:
        _xml_links(
            sample_children.get(ATOM_LINK, []), actual_children.get(ATOM_LINK, []), allow, where
        )
    in_every_sample = set.intersection(*({c.tag for c in s} for s in samples)) if samples else set()
    map_like = _local(element.tag) in MAPS or _local(element.tag) == "network"
    for tag, children in actual_children.items():
        if tag == ATOM_LINK:
            continue
        if tag not in sample_children:
            if not _permitted(allow.extra, _local(element.tag), _local(tag)):
                raise Mismatch(f"{where}: unexpected child <{_local(tag)}>")
            continue
        for child in children:
            _compare_element(sample_children[tag], child, allow, f"{where}/{_local(tag)}")
    for tag in in_every_sample - set(actual_children) - {ATOM_LINK}:
        if map_like and not list(element):
            continue
        if not _permitted(allow.missing, _local(element.tag), _local(tag)):
            raise Mismatch(f"{where}: missing child <{_local(tag)}>")
    texts = [bool((s.text or "").strip()) for s in samples]
    if all(texts) and not (element.text or "").strip() and not map_like:
        raise Mismatch(f"{where}: text expected")


def _xml_links(
    expected: list[ET.Element], actual: list[ET.Element], allow: Allowances, where: str
) -> None:
    _links(
        [dict(link.attrib) for link in expected],
        [dict(link.attrib) for link in actual],
        f"{where}/atom:link",
        allow,
    )
