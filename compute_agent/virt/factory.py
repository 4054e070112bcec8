"""Choose the virt driver from the settings."""

from __future__ import annotations

import importlib.util
import logging

from compute_agent.virt.driver import ComputeDriver
from compute_agent.virt.fake import FakeDriver
from shared.config import Settings

log = logging.getLogger(__name__)


def libvirt_available() -> bool:
    return importlib.util.find_spec("libvirt") is not None


def create_driver(settings: Settings) -> ComputeDriver:
    """The libvirt driver, or the fake one when asked for or (``auto``) libvirt is missing."""
    kind = settings.virt_driver
    if kind == "auto":
        kind = "libvirt" if libvirt_available() else "fake"
        if kind == "fake":
            log.warning(
                "the libvirt binding is not installed: using the in-memory fake hypervisor "
                "(install the .[libvirt] extra for real domains)"
            )
    overrides = {
        "vcpus": settings.host_vcpus,
        "ram_mb": settings.host_ram_mb,
        "disk_gb": settings.host_disk_gb,
    }
    if kind == "fake":
        return FakeDriver(**{k: v for k, v in overrides.items() if v is not None})
    from compute_agent.virt.libvirt.driver import LibvirtDriver

    return LibvirtDriver(settings.libvirt_uri, settings.instances_dir, **overrides)
