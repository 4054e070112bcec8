"""Version documents (guide 1.7) in the form today's clients accept.

``id`` is ``v2.0`` and ``version``/``min_version`` are empty strings: that tells novaclient,
openstacksdk and tempest that this is the plain v2 API without microversions.
"""

from __future__ import annotations

from typing import Any

UPDATED = "2011-01-21T11:33:21Z"

MEDIA_TYPES = [
    {"base": "application/xml", "type": "application/vnd.openstack.compute+xml;version=2"},
    {"base": "application/json", "type": "application/vnd.openstack.compute+json;version=2"},
]

DESCRIBED_BY = [
    {
        "rel": "describedby",
        "type": "application/pdf",
        "href": "http://docs.openstack.org/api/openstack-compute/2/os-compute-devguide-2.pdf",
    },
    {
        "rel": "describedby",
        "type": "application/vnd.sun.wadl+xml",
        "href": "http://docs.openstack.org/api/openstack-compute/2/wadl/os-compute-2.wadl",
    },
]


def _v2(base: str) -> dict[str, Any]:
    return {
        "id": "v2.0",
        "status": "CURRENT",
        "version": "",
        "min_version": "",
        "updated": UPDATED,
        "links": [{"rel": "self", "href": f"{base}/v2/"}],
    }


def version_list(base: str) -> dict[str, Any]:
    return {"versions": [_v2(base)]}


def version_detail(base: str) -> dict[str, Any]:
    version = _v2(base)
    version["links"] = version["links"] + DESCRIBED_BY
    version["media-types"] = MEDIA_TYPES
    return {"version": version}


def for_xml(body: dict[str, Any]) -> dict[str, Any]:
    """The XML form: ``version`` and ``min_version`` are JSON-only hints for microversion-aware
    clients, not attributes of the guide's schema."""

    def strip(version: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in version.items() if k not in ("version", "min_version")}

    if "versions" in body:
        return {"versions": [strip(v) for v in body["versions"]]}
    return {"version": strip(body["version"])}


def choices(base: str, path: str) -> dict[str, Any]:
    """The 300 Multiple Choices document: each version with a link to ``path`` under it."""
    return {
        "choices": [
            {
                "id": "v2.0",
                "status": "CURRENT",
                "links": [{"rel": "self", "href": f"{base}/v2{path}"}],
                "media-types": MEDIA_TYPES,
            }
        ]
    }
