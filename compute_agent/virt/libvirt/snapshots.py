"""Images of a domain's disk (createImage): an internal snapshot, exported to a file.

The snapshot is taken with libvirt (``snapshotCreateXML``), its disk state exported to the
image file with ``qemu-img convert`` and the snapshot deleted again, so the domain keeps no
trace of it. libvirt's test hypervisor has no disks: there the same steps run, and the image
it gives is empty. The file appears whole or not at all (written aside, then renamed).
"""

from __future__ import annotations

import logging
import os
import subprocess
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import libvirt

from compute_agent.virt.driver import DriverError
from compute_agent.virt.libvirt import domain_xml

log = logging.getLogger(__name__)


def write_image(dom: Any, image_id: uuid.UUID, dest: Path, *, has_disks: bool) -> int:
    """Write the image of ``dom`` as ``dest``; return its size. An existing ``dest`` is the
    result of an earlier run and is kept as it is."""
    if dest.exists():
        return dest.stat().st_size
    name = f"image-{image_id}"
    snapshot = _snapshot(dom, name)
    partial = dest.with_name(f".{dest.name}.partial")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        if has_disks:
            _export(dom, name, partial)
        else:
            partial.write_bytes(b"")  # the test hypervisor's snapshot holds no disk data
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)
        snapshot.delete(0)
    return dest.stat().st_size


def _snapshot(dom: Any, name: str) -> Any:
    """The snapshot ``name`` of ``dom``, taken now unless an earlier run left it."""
    try:
        return dom.snapshotLookupByName(name, 0)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT:
            raise
    root = ET.Element("domainsnapshot")
    ET.SubElement(root, "name").text = name
    ET.SubElement(root, "description").text = "Stratus createImage"
    return dom.snapshotCreateXML(ET.tostring(root, encoding="unicode"), 0)


def _export(dom: Any, snapshot: str, target: Path) -> None:
    disks = domain_xml.disk_paths(dom.XMLDesc(0))
    if not disks:
        raise DriverError("the server has no disk to make an image of")
    command = ["qemu-img", "convert", "-f", "qcow2", "-O", "qcow2", "-s", snapshot]
    command += [str(disks[0]), str(target)]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise DriverError("qemu-img is not installed on this host") from exc
    except subprocess.CalledProcessError as exc:
        raise DriverError(f"qemu-img could not export the snapshot: {exc.stderr.strip()}") from exc
