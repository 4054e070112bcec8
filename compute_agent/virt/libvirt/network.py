"""A server's network configuration, as the libvirt driver hands it to the guest.

injectNetworkInfo writes the server's fixed addresses into the domain's persistent (and, when
it runs, live) metadata, where a guest agent or a metadata service on the host reads them;
writing replaces what was there, so doing it twice is doing it once. resetNetwork writes them
the same way and then has the guest take its network up again: each interface's link is
set down and up, which makes a guest renew its lease and re-apply its configuration. The
test hypervisor keeps metadata but cannot change a device; domains without interfaces (as
Stratus defines them until networking has devices of its own) have no link to bounce.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import libvirt

from shared.messages import NetworkAddress

NS = "https://stratus.dev/xmlns/libvirt/network/1"
_KEY = "stratus-network"


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


def _flags(dom: Any) -> int:
    flags: int = libvirt.VIR_DOMAIN_AFFECT_CONFIG
    if dom.isActive():
        flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
    return flags


def inject(dom: Any, addresses: list[NetworkAddress]) -> None:
    """Write ``addresses`` into the domain's metadata, replacing what was there."""
    dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, document(addresses), _KEY, NS, _flags(dom))


def injected(dom: Any) -> list[NetworkAddress]:
    """The addresses last injected into the domain (none if never)."""
    try:
        xml = dom.metadata(
            libvirt.VIR_DOMAIN_METADATA_ELEMENT, NS, libvirt.VIR_DOMAIN_AFFECT_CONFIG
        )
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_METADATA:
            return []
        raise
    return [
        NetworkAddress(
            network=ip.get("network", ""),
            version=int(ip.get("version", "4")),
            addr=ip.get("addr", ""),
        )
        for ip in ET.fromstring(xml).findall("ip")
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
    """Set every interface of the running domain down, then up; returns how many."""
    if not dom.isActive():
        return 0
    live = dom.XMLDesc(0)
    for state in ("down", "up"):
        for device in link_updates(live, state):
            dom.updateDeviceFlags(device, libvirt.VIR_DOMAIN_AFFECT_LIVE)
    return len(link_updates(live, "up"))
