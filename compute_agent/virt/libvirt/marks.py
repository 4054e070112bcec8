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

from compute_agent.virt.libvirt import metadata

NS = "https://stratus.dev/xmlns/libvirt/actions/1"
_KEY = "stratus-actions"
#: how many action ids a domain remembers (a duplicate arrives soon after its original)
KEPT = 16


def _recorded(dom: Any) -> list[str]:
    root = metadata.read(dom, NS)
    return [] if root is None else [item.get("id", "") for item in root.findall("action")]


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
    metadata.write(dom, ET.tostring(root, encoding="unicode"), _KEY, NS)
