"""Choose the virt driver from the settings; and the hosts ``stratus up`` runs in one process."""

from __future__ import annotations

import importlib.util
import logging
from typing import Literal

from compute_agent.image_cache import ImageCache
from compute_agent.image_service import ImageServiceClient
from compute_agent.virt.driver import ComputeDriver
from compute_agent.virt.fake import FakeDriver
from compute_agent.virt.libvirt import mock_nodes
from shared.config import Settings
from shared.sealing import Keyring

log = logging.getLogger(__name__)

DriverKind = Literal["libvirt", "fake"]


def libvirt_available() -> bool:
    return importlib.util.find_spec("libvirt") is not None


def driver_kind(settings: Settings) -> DriverKind:
    """libvirt, or fake when asked for or (``auto``) when the libvirt binding is missing."""
    if settings.virt_driver != "auto":
        return settings.virt_driver
    if libvirt_available():
        return "libvirt"
    log.warning(
        "the libvirt binding is not installed: using the in-memory fake hypervisor "
        "(install the .[libvirt] extra for real domains)"
    )
    return "fake"


def create_driver(
    settings: Settings, *, kind: DriverKind | None = None, libvirt_uri: str | None = None
) -> ComputeDriver:
    """The driver of one host: ``kind`` (default: ``driver_kind``), and for libvirt the
    hypervisor at ``libvirt_uri`` (default: STRATUS_LIBVIRT_URI)."""
    overrides = {
        "vcpus": settings.host_vcpus,
        "ram_mb": settings.host_ram_mb,
        "disk_gb": settings.host_disk_gb,
    }
    if (kind or driver_kind(settings)) == "fake":
        sizes = {k: v for k, v in overrides.items() if v is not None}
        return FakeDriver(**sizes, instances_dir=settings.instances_dir)
    from compute_agent.virt.libvirt.driver import LibvirtDriver

    return LibvirtDriver(
        libvirt_uri or settings.libvirt_uri,
        settings.instances_dir,
        vcpus=settings.host_vcpus,
        ram_mb=settings.host_ram_mb,
        disk_gb=settings.host_disk_gb,
        live_migration_p2p=settings.live_migration_p2p,
        image_store=settings.image_store,
        virt_type=settings.libvirt_virt_type,
        network=settings.libvirt_network,
        shutdown_timeout_s=settings.libvirt_shutdown_timeout_s,
        display_listen=settings.console_listen,
        display_address=settings.console_proxyclient_address,
        image_cache=image_cache(settings),
        keepalive_s=settings.libvirt_keepalive_s,
        reconnect_max_s=settings.libvirt_reconnect_max_s,
    )


def image_cache(settings: Settings) -> ImageCache | None:
    """The host's cache of images downloaded from the image API, where one is configured
    (STRATUS_IMAGE_API_URL); None: bases are read in place from the shared image store."""
    client = image_service_client(settings)
    return None if client is None else ImageCache(settings.image_cache_dir, client)


def image_service_client(settings: Settings) -> ImageServiceClient | None:
    """How an agent reaches the image service (STRATUS_IMAGE_API_URL); None: it reads and
    writes the shared image store instead."""
    if settings.image_api_url is None:
        return None
    return ImageServiceClient(settings.image_api_url, Keyring.from_setting(settings.message_key))


def up_hosts(settings: Settings, kind: DriverKind) -> list[str]:
    """The hosts ``stratus up`` runs: STRATUS_UP_AGENTS of them, ``<host>-1`` … ``<host>-N``
    (just ``<host>`` for one). Several need hypervisors of their own: the fake driver's, or
    libvirt's test hypervisor's; agents on any other libvirt URI would share one real
    hypervisor, so there is one agent then."""
    count = settings.up_agents
    if count > 1 and kind == "libvirt" and settings.libvirt_uri != mock_nodes.DEFAULT_URI:
        log.warning(
            "%s is one hypervisor: running one compute agent on it (STRATUS_UP_AGENTS=%d "
            "needs the test hypervisor or the fake driver)",
            settings.libvirt_uri,
            count,
        )
        count = 1
    if count == 1:
        return [settings.host]
    return [f"{settings.host}-{i}" for i in range(1, count + 1)]


def up_drivers(settings: Settings) -> dict[str, ComputeDriver]:
    """The driver of each host ``stratus up`` runs (``up_hosts``): with several on libvirt's
    test hypervisor, each its own (a node file under ``<data_dir>/hypervisors``)."""
    kind = driver_kind(settings)
    hosts = up_hosts(settings, kind)
    if kind == "fake" or len(hosts) == 1:
        return {host: create_driver(settings, kind=kind) for host in hosts}
    hypervisors = settings.data_dir / "hypervisors"
    return {
        host: create_driver(settings, kind=kind, libvirt_uri=mock_nodes.node_uri(hypervisors, host))
        for host in hosts
    }
