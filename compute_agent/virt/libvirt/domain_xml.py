"""Domain XML built from a server's flavor and image.

Pure functions of their inputs, so the XML can be tested without a hypervisor. The Stratus
metadata element records which server and flavor a domain belongs to, so a host's domains can
be matched back to the database after an agent restart.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from shared.messages import InstanceSpec

METADATA_NS = "https://stratus.dev/xmlns/libvirt/instance/1"


def build(instance: InstanceSpec, *, domain_type: str, disk_path: Path) -> str:
    """The ``<domain>`` document for ``instance`` on a hypervisor of ``domain_type``."""
    domain = ET.Element("domain", type=domain_type)
    ET.SubElement(domain, "name").text = instance.domain_name
    ET.SubElement(domain, "uuid").text = str(instance.server_id)
    ET.SubElement(domain, "title").text = instance.name[:255]
    _metadata(domain, instance)
    ET.SubElement(domain, "memory", unit="MiB").text = str(instance.flavor.ram_mb)
    ET.SubElement(domain, "vcpu").text = str(instance.flavor.vcpus)
    os_el = ET.SubElement(domain, "os")
    ET.SubElement(os_el, "type").text = "hvm"
    ET.SubElement(os_el, "boot", dev="hd")
    features = ET.SubElement(domain, "features")
    ET.SubElement(features, "acpi")
    ET.SubElement(domain, "on_poweroff").text = "destroy"
    ET.SubElement(domain, "on_reboot").text = "restart"
    ET.SubElement(domain, "on_crash").text = "destroy"
    devices = ET.SubElement(domain, "devices")
    _root_disk(devices, disk_path)
    ET.SubElement(devices, "serial", type="pty")
    return ET.tostring(domain, encoding="unicode")


def _metadata(domain: ET.Element, instance: InstanceSpec) -> None:
    metadata = ET.SubElement(domain, "metadata")
    owner = ET.SubElement(metadata, f"{{{METADATA_NS}}}instance")
    ET.SubElement(owner, f"{{{METADATA_NS}}}name").text = instance.name
    ET.SubElement(
        owner,
        f"{{{METADATA_NS}}}flavor",
        id=instance.flavor.id,
        name=instance.flavor.name,
    )
    ET.SubElement(owner, f"{{{METADATA_NS}}}image", id=str(instance.image.id))


def _root_disk(devices: ET.Element, disk_path: Path) -> None:
    disk = ET.SubElement(devices, "disk", type="file", device="disk")
    ET.SubElement(disk, "driver", name="qemu", type="qcow2", cache="none")
    ET.SubElement(disk, "source", file=str(disk_path))
    ET.SubElement(disk, "target", dev="vda", bus="virtio")


ET.register_namespace("stratus", METADATA_NS)


def flavor_id(xml: str) -> str | None:
    """The flavor a domain document was built with (from its Stratus metadata), if any."""
    flavor = ET.fromstring(xml).find(f"metadata/{{{METADATA_NS}}}instance/{{{METADATA_NS}}}flavor")
    return flavor.get("id") if flavor is not None else None


def disk_paths(xml: str) -> list[Path]:
    """The files behind a domain's disks, in device order."""
    return [
        Path(source.get("file", ""))
        for source in ET.fromstring(xml).findall("devices/disk[@device='disk']/source")
        if source.get("file")
    ]
