"""Which actions a domain has already been through, kept in the domain itself.

A reboot or a rebuild done twice is not the same as done once, and the bus may deliver their
command twice (after an agent crash, or when the report could not be sent). The domain's
persistent metadata records the ids of the last actions applied to it, so a repeated command
finds its action there, even after an agent restart, and does nothing.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from typing import Any

import libvirt

NS = "https://stratus.dev/xmlns/libvirt/actions/1"
_KEY = "stratus-actions"
#: how many action ids a domain remembers (a duplicate arrives soon after its original)
KEPT = 16


def _recorded(dom: Any) -> list[str]:
    try:
        xml = dom.metadata(
            libvirt.VIR_DOMAIN_METADATA_ELEMENT, NS, libvirt.VIR_DOMAIN_AFFECT_CONFIG
        )
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_METADATA:
            return []
        raise
    return [item.get("id", "") for item in ET.fromstring(xml).findall("action")]


def done(dom: Any, action_id: uuid.UUID) -> bool:
    """Has ``action_id`` already been applied to the domain?"""
    return str(action_id) in _recorded(dom)


def record(dom: Any, action_id: uuid.UUID) -> None:
    """Remember that ``action_id`` has been applied (in the persistent definition, and in the
    running one when the domain runs)."""
    ids = [*_recorded(dom), str(action_id)][-KEPT:]
    root = ET.Element("actions")
    for recorded in ids:
        ET.SubElement(root, "action", id=recorded)
    flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG
    if dom.isActive():
        flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
    dom.setMetadata(
        libvirt.VIR_DOMAIN_METADATA_ELEMENT, ET.tostring(root, encoding="unicode"), _KEY, NS, flags
    )
