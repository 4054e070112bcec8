"""Guests' consoles on libvirt: which displays QEMU can give guests here, and where a running
guest's display listens.

Every QEMU serves VNC; SPICE only where it was built with it, which libvirt's domain
capabilities tell, so a guest is never defined with a display its QEMU would refuse to start
with. Ports are chosen by QEMU at each start (``autoport``), so the live document is read
every time, never remembered.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import libvirt

from compute_agent.virt.driver import ConsoleEndpoint, ConsoleNotReady, ConsoleUnavailable
from compute_agent.virt.libvirt import domain_xml
from shared.messages import ConsoleProtocol

#: listen addresses that are no address to connect to
_WILDCARDS = frozenset({"", "0.0.0.0", "::", "[::]"})


def supported_displays(conn: Any, domain_type: str) -> tuple[ConsoleProtocol, ...]:
    """The displays guests of ``domain_type`` get on this hypervisor: VNC, and SPICE when
    libvirt says this QEMU has it (a libvirt that cannot say: VNC only)."""
    try:
        capabilities = conn.getDomainCapabilities(None, None, None, domain_type, 0)
    except libvirt.libvirtError:
        return ("vnc",)
    types = ET.fromstring(capabilities).findall("devices/graphics/enum[@name='type']/value")
    if "spice" in {value.text for value in types}:
        return ("vnc", "spice")
    return ("vnc",)


def endpoint(
    conn: Any, domain_name: str, protocol: ConsoleProtocol, address: str | None
) -> ConsoleEndpoint:
    """Where the running domain's ``protocol`` display listens, to be reached at ``address``
    (None: the address the display listens on; loopback for a wildcard). Blocking."""
    try:
        dom = conn.lookupByName(domain_name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            raise ConsoleNotReady(f"server {domain_name} is not on this host") from None
        raise
    if not dom.isActive():
        raise ConsoleNotReady(f"server {domain_name} is not running")
    found = domain_xml.display(dom.XMLDesc(0), protocol)
    if found is None:
        raise ConsoleUnavailable(f"server {domain_name} has no {protocol} display")
    listen, port = found
    reach = address or ("127.0.0.1" if listen in _WILDCARDS else listen)
    return ConsoleEndpoint(reach, port)
