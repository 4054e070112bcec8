"""Stratus's own elements in a domain's metadata, each under its namespace: the actions a
domain has been through (marks.py), the addresses injected into it (network.py)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import libvirt


def read(dom: Any, ns: str) -> ET.Element | None:
    """The element under ``ns`` in the domain's persistent definition (None: none yet)."""
    try:
        xml = dom.metadata(
            libvirt.VIR_DOMAIN_METADATA_ELEMENT, ns, libvirt.VIR_DOMAIN_AFFECT_CONFIG
        )
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_METADATA:
            return None
        raise
    return ET.fromstring(xml)


def write(dom: Any, element: str, key: str, ns: str) -> None:
    """Replace the element under ``ns`` (prefixed ``key``) in the persistent definition, and in
    the running one when the domain runs."""
    flags: int = libvirt.VIR_DOMAIN_AFFECT_CONFIG
    if dom.isActive():
        flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
    dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, element, key, ns, flags)
