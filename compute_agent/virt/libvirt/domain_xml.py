"""Domain XML built from a server's flavor and image, and read back.

Pure functions of their inputs, so the XML can be tested without a hypervisor. The Stratus
metadata element records which server and flavor a domain belongs to, so a host's domains can
be matched back to the database after an agent restart.

A domain is what a small cloud server needs under QEMU: the flavor's vCPUs and RAM; ACPI
(soft reboots and shutdowns are the guest's power button); its root disk on virtio; a virtio
NIC on QEMU's user-mode network (no bridge needed) or on a libvirt network; its serial
console on a pty and logged to a file; the QEMU guest agent's channel
(``org.qemu.guest_agent.0``: passwords, file writes, quiesced snapshots); and its displays
(``<graphics>``: VNC, and SPICE where QEMU has it) on ports QEMU chooses when the guest starts,
on the host's listen address, for the consoles of nova's os-consoles. It boots from its
disk, or from a kernel of its image's (images.py).
"""

from __future__ import annotations

import hashlib
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from compute_agent.virt.libvirt.images import BootFiles
from shared.messages import InstanceSpec

METADATA_NS = "https://stratus.dev/xmlns/libvirt/instance/1"

#: the virtio-serial port the QEMU guest agent listens on in the guest
GUEST_AGENT_CHANNEL = "org.qemu.guest_agent.0"

#: the device name of the root disk in the guest
ROOT_TARGET = "vda"
#: the config drive's device (a CD-ROM on the SATA bus)
CONFIG_DRIVE_TARGET = "sda"


def build(
    instance: InstanceSpec,
    *,
    domain_type: str,
    disk_path: Path,
    console_log: Path | None = None,
    config_drive: Path | None = None,
    boot: BootFiles | None = None,
    network: str = "",
    cache: str = "none",
    displays: Sequence[str] = (),
    display_listen: str = "127.0.0.1",
) -> str:
    """The ``<domain>`` document for ``instance`` on a hypervisor of ``domain_type`` (``kvm``,
    ``qemu``, or ``test``), its root disk at ``disk_path``, its console logged to
    ``console_log``, its config drive (if any) at ``config_drive``; on the libvirt
    ``network`` (empty: QEMU's user-mode networking); with a display of each protocol of
    ``displays`` (``vnc``, ``spice``) listening on ``display_listen``."""
    domain = ET.Element("domain", type=domain_type)
    ET.SubElement(domain, "name").text = instance.domain_name
    ET.SubElement(domain, "uuid").text = str(instance.server_id)
    ET.SubElement(domain, "title").text = instance.name[:255]
    _metadata(domain, instance)
    ET.SubElement(domain, "memory", unit="MiB").text = str(instance.flavor.ram_mb)
    ET.SubElement(domain, "vcpu").text = str(instance.flavor.vcpus)
    _os(domain, boot)
    features = ET.SubElement(domain, "features")
    ET.SubElement(features, "acpi")
    ET.SubElement(domain, "clock", offset="utc")
    ET.SubElement(domain, "on_poweroff").text = "destroy"
    ET.SubElement(domain, "on_reboot").text = "restart"
    ET.SubElement(domain, "on_crash").text = "destroy"
    devices = ET.SubElement(domain, "devices")
    _root_disk(devices, disk_path, cache)
    if config_drive is not None:
        _config_drive(devices, config_drive)
    _nic(devices, instance.server_id, network)
    _console(devices, console_log)
    channel = ET.SubElement(devices, "channel", type="unix")
    ET.SubElement(channel, "target", type="virtio", name=GUEST_AGENT_CHANNEL)
    for protocol in displays:
        _graphics(devices, protocol, display_listen)
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


def _os(domain: ET.Element, boot: BootFiles | None) -> None:
    os_el = ET.SubElement(domain, "os")
    ET.SubElement(os_el, "type").text = "hvm"
    if boot is None:
        ET.SubElement(os_el, "boot", dev="hd")
        return
    ET.SubElement(os_el, "kernel").text = str(boot.kernel)
    if boot.initrd is not None:
        ET.SubElement(os_el, "initrd").text = str(boot.initrd)
    if boot.cmdline:
        ET.SubElement(os_el, "cmdline").text = boot.cmdline


def _root_disk(devices: ET.Element, disk_path: Path, cache: str) -> None:
    disk = ET.SubElement(devices, "disk", type="file", device="disk")
    ET.SubElement(disk, "driver", name="qemu", type="qcow2", cache=cache)
    ET.SubElement(disk, "source", file=str(disk_path))
    ET.SubElement(disk, "target", dev=ROOT_TARGET, bus="virtio")


def _config_drive(devices: ET.Element, path: Path) -> None:
    """The config drive as nova attaches it: a read-only CD-ROM, on SATA (which libvirt
    gives a controller on the ``pc`` machine type as on ``q35``), where the guest looks for
    the ``config-2`` label (deploy/guest/README.md). Read-only, a block migration leaves it
    out: the destination builds its own copy first."""
    disk = ET.SubElement(devices, "disk", type="file", device="cdrom")
    ET.SubElement(disk, "driver", name="qemu", type="raw")
    ET.SubElement(disk, "source", file=str(path))
    ET.SubElement(disk, "target", dev=CONFIG_DRIVE_TARGET, bus="sata")
    ET.SubElement(disk, "readonly")


def mac_address(server_id: uuid.UUID) -> str:
    """The NIC's address, the same at every definition of the server (a rebuild, a resize,
    a move keep the guest's interface), in QEMU's locally administered range."""
    digest = hashlib.sha256(server_id.bytes).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def _nic(devices: ET.Element, server_id: uuid.UUID, network: str) -> None:
    if network:
        nic = ET.SubElement(devices, "interface", type="network")
        ET.SubElement(nic, "source", network=network)
    else:
        nic = ET.SubElement(devices, "interface", type="user")
    ET.SubElement(nic, "mac", address=mac_address(server_id))
    ET.SubElement(nic, "model", type="virtio")


def _console(devices: ET.Element, console_log: Path | None) -> None:
    """The serial port on a pty (``virsh console``), everything it prints also logged."""
    serial = ET.SubElement(devices, "serial", type="pty")
    if console_log is not None:
        ET.SubElement(serial, "log", file=str(console_log), append="on")
    ET.SubElement(serial, "target", port="0")
    console = ET.SubElement(devices, "console", type="pty")
    ET.SubElement(console, "target", type="serial", port="0")


def _graphics(devices: ET.Element, protocol: str, listen: str) -> None:
    """A display QEMU serves on a port it picks at each start (``autoport``: fixed ports
    would collide between guests and across migrations), on ``listen`` only."""
    graphics = ET.SubElement(devices, "graphics", type=protocol, autoport="yes", listen=listen)
    ET.SubElement(graphics, "listen", type="address", address=listen)


ET.register_namespace("stratus", METADATA_NS)


def flavor_id(xml: str) -> str | None:
    """The flavor a domain document was built with (from its Stratus metadata), if any."""
    flavor = ET.fromstring(xml).find(f"metadata/{{{METADATA_NS}}}instance/{{{METADATA_NS}}}flavor")
    return flavor.get("id") if flavor is not None else None


def disk_paths(xml: str) -> list[Path]:
    """The files behind a domain's disks (each disk's top file), in device order."""
    return [
        Path(source.get("file", ""))
        for source in ET.fromstring(xml).findall("devices/disk[@device='disk']/source")
        if source.get("file")
    ]


def agent_connected(live_xml: str) -> bool:
    """Does a guest agent answer on the running domain's agent channel?"""
    for target in ET.fromstring(live_xml).findall("devices/channel/target"):
        if target.get("name") == GUEST_AGENT_CHANNEL:
            return target.get("state") == "connected"
    return False


def with_root_disk(xml: str, path: Path) -> str:
    """The domain document with its root disk's file ``path`` (and no recorded backing
    chain: libvirt finds the file's own)."""
    root = ET.fromstring(xml)
    disk = root.find("devices/disk[@device='disk']")
    if disk is None:
        return xml
    source = disk.find("source")
    if source is None:
        source = ET.SubElement(disk, "source")
    source.set("file", str(path))
    for backing in disk.findall("backingStore"):
        disk.remove(backing)
    return ET.tostring(root, encoding="unicode")


def relocate(xml: str, old_dir: Path, new_dir: Path) -> str:
    """The domain document with every file under ``old_dir`` (disks, console log) moved to
    the same place under ``new_dir`` (a server arriving in another host's instances
    directory)."""
    root = ET.fromstring(xml)
    old = str(old_dir).rstrip("/")
    for element in root.iter():
        for attribute in ("file", "path"):
            value = element.get(attribute)
            if value is not None and (value == old or value.startswith(old + "/")):
                element.set(attribute, str(new_dir) + value[len(old) :])
    return ET.tostring(root, encoding="unicode")


def display(live_xml: str, protocol: str) -> tuple[str, int] | None:
    """Where the running domain's display of ``protocol`` listens (address as libvirt
    writes it, ``""`` when it writes none; port), from its live document; None when it has
    no such display, or no port yet (libvirt writes ``-1`` until QEMU runs)."""
    graphics = ET.fromstring(live_xml).find(f"devices/graphics[@type='{protocol}']")
    if graphics is None:
        return None
    try:
        port = int(graphics.get("port", "-1"))
    except ValueError:
        return None
    if port <= 0:
        return None
    listen = graphics.find("listen[@type='address']")
    address = graphics.get("listen") or (listen.get("address") if listen is not None else None)
    return address or "", port


def boot_paths(xml: str) -> set[Path]:
    """The kernel and initrd files a domain's XML boots (none for a boot from its disk)."""
    os_element = ET.fromstring(xml).find("os")
    if os_element is None:
        return set()
    names = (os_element.findtext(tag) for tag in ("kernel", "initrd"))
    return {Path(name) for name in names if name}
