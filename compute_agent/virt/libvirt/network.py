"""A server's network configuration, as the libvirt driver hands it to the guest.

injectNetworkInfo writes the server's fixed addresses into the domain's persistent (and, when
it runs, live) metadata, where a metadata service on the host can read them, and into the
guest itself: its guest agent writes them as ``/etc/stratus-network.json`` (``GUEST_FILE``),
JSON ``{"addresses": [{"network", "version", "addr"}...]}``, for the guest's own tools to
apply. Writing replaces what was there, so doing it twice is doing it once. A running guest
without a guest agent cannot take the file: the action fails with a fault saying so (the
metadata is written all the same); libvirt's test hypervisor has no guest agents at all, and
keeps the metadata only.

resetNetwork writes them the same way and then has the guest take its network up again: each
interface's link is set down and up, which makes a guest renew its lease and re-apply its
configuration. The test hypervisor keeps metadata but cannot change a device: there nothing
is bounced.
"""

from __future__ import annotations

import json
import logging
import xml.etree.ElementTree as ET
from typing import Any

import libvirt

from compute_agent.virt.libvirt import guest_agent, metadata
from shared.messages import NetworkAddress

log = logging.getLogger(__name__)

NS = "https://stratus.dev/xmlns/libvirt/network/1"
_KEY = "stratus-network"

#: where the guest agent writes the addresses in the guest
GUEST_FILE = "/etc/stratus-network.json"


def document(addresses: list[NetworkAddress]) -> str:
    """``<network>`` with one ``<ip network version addr/>`` per address."""
    root = ET.Element("network")
    for address in addresses:
        ET.SubElement(
            root,
            "ip",
            network=address.network,
            version=str(address.version),
            addr=address.addr,
        )
    return ET.tostring(root, encoding="unicode")


def inject(dom: Any, addresses: list[NetworkAddress]) -> None:
    """Write ``addresses`` into the domain's metadata and, when it runs, into the guest,
    replacing what was there (``DriverError`` when the running guest cannot take them)."""
    metadata.write(dom, document(addresses), _KEY, NS)
    if not dom.isActive():
        return  # the metadata is there for when it starts
    try:
        guest_agent.write_file(dom, GUEST_FILE, guest_document(addresses))
    except guest_agent.NoGuestAgents:
        log.info("%s: this hypervisor has no guest agents; the metadata is written", dom.name())


def guest_document(addresses: list[NetworkAddress]) -> bytes:
    """The file the guest gets: its addresses as JSON."""
    entries = [address.model_dump() for address in addresses]
    return (json.dumps({"addresses": entries}, indent=2) + "\n").encode()


def injected(dom: Any) -> list[NetworkAddress]:
    """The addresses last injected into the domain (none if never)."""
    root = metadata.read(dom, NS)
    if root is None:
        return []
    return [
        NetworkAddress(
            network=ip.get("network", ""),
            version=int(ip.get("version", "4")),
            addr=ip.get("addr", ""),
        )
        for ip in root.findall("ip")
    ]


def link_updates(domain_xml: str, state: str) -> list[str]:
    """For each interface of a live domain document, the device XML that sets its link to
    ``state`` (``up`` or ``down``), the rest of the device unchanged."""
    updates = []
    for interface in ET.fromstring(domain_xml).findall("devices/interface"):
        link = interface.find("link")
        if link is None:
            link = ET.SubElement(interface, "link")
        link.set("state", state)
        updates.append(ET.tostring(interface, encoding="unicode"))
    return updates


def bounce_links(dom: Any) -> int:
    """Set every interface of the running domain down, then up; returns how many (none on a
    hypervisor that cannot change a device)."""
    if not dom.isActive():
        return 0
    live = dom.XMLDesc(0)
    try:
        for state in ("down", "up"):
            for device in link_updates(live, state):
                dom.updateDeviceFlags(device, libvirt.VIR_DOMAIN_AFFECT_LIVE)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
            raise
        log.info("%s: this hypervisor cannot set links down and up", dom.name())
        return 0
    return len(link_updates(live, "up"))
