"""KVM or plain QEMU: which domain type a host's servers get.

STRATUS_LIBVIRT_VIRT_TYPE forces ``kvm`` or ``qemu``; ``auto`` asks libvirt for the domain
capabilities of ``kvm`` and uses it only if KVM can run QEMU's default CPU model. That last
check matters: on some machines (nested, or restricted, virtualization) ``/dev/kvm`` opens
and libvirt reports the kvm domain type as supported, but the CPU KVM offers lacks what
QEMU's default model needs (libvirt marks that model ``usable='no'``) and guests hang or die
early in their boot. Those hosts run their servers under TCG (``qemu``): slower, but they run.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from typing import Any, Literal

log = logging.getLogger(__name__)

VirtType = Literal["kvm", "qemu"]

#: QEMU's default CPU model for x86 guests (the domain XML names none)
DEFAULT_CPU_MODELS = ("qemu64", "qemu32")


def choose(conn: Any, setting: str) -> VirtType:
    """The domain type for this host's servers: ``setting`` unless ``auto``, else probed."""
    if setting in ("kvm", "qemu"):
        return "kvm" if setting == "kvm" else "qemu"
    import libvirt  # only a probe needs the binding: the domain builders and tests do not

    try:
        caps = conn.getDomainCapabilities(None, None, None, "kvm", 0)
    except libvirt.libvirtError as exc:
        log.info("no KVM on this host (%s): servers run under QEMU's emulation", exc)
        return "qemu"
    if not kvm_usable(caps):
        log.warning(
            "KVM is there but cannot run QEMU's default CPU model: servers run under QEMU's "
            "emulation (STRATUS_LIBVIRT_VIRT_TYPE=kvm forces KVM)"
        )
        return "qemu"
    return "kvm"


def kvm_usable(domain_capabilities: str) -> bool:
    """Does the hypervisor whose ``kvm`` domain capabilities these are run QEMU's default
    CPU model with KVM? (True when the capabilities do not say: nothing suggests not.)"""
    root = ET.fromstring(domain_capabilities)
    for model in root.findall("cpu/mode[@name='custom']/model"):
        if model.text in DEFAULT_CPU_MODELS:
            return model.get("usable", "yes") == "yes"
    return True
