"""Live migration with libvirt: the driver's side of each step (compute_agent/virt/driver.py).

The source moves the running domain with ``virDomainMigrateToURI3`` to the destination's
libvirt (peer to peer, ``STRATUS_LIVE_MIGRATION_P2P``), or opens the destination's libvirt
and calls ``virDomainMigrate3`` itself (managed direct), with ``LIVE | PERSIST_DEST |
UNDEFINE_SOURCE``, and for a block migration ``NON_SHARED_INC`` and the list of disks to copy.

libvirt's test hypervisor implements no migration at all. There, and only there, one thing is
different (``_TestHypervisorHandover``): instead of asking libvirt to migrate, the source
checks that the destination's hypervisor answers and returns the domain's definition, which
the conductor hands to the destination; the destination defines and starts it, and the
source's clean-up removes the original. Every other step (the destination's checks and
preparation, the flags and parameters, the confirmation, the clean-up, the rollback) is the
same code for both.

Disks. Without a block migration the server's disk is on storage both hosts share (the same
instances directory, e.g. NFS): nothing is copied, and neither host ever removes it. With
one, the destination prepares an empty root disk of the same size on the same base image
(disks.py; refused if the server's disk is there already, which means shared storage) and
the hypervisor copies the source's overlay into it (``NON_SHARED_INC``: the image's base is
in the store, on both hosts); the source removes its copy once the server runs on the
destination, the destination its own only if the migration fails.

The destination's instances directory need not be the source's (two hosts on one machine
have two): the destination announces it for the arriving server as a transient libvirt
storage pool, ``stratus-arrival-<server id>``, which the source reads over its connection
to the destination, and the domain's files are moved there in the definition the
destination gets (``VIR_MIGRATE_PARAM_DEST_XML``, ``..._PERSIST_XML``). The migration stream
goes to the address the source reaches the destination's libvirt at
(``VIR_MIGRATE_PARAM_URI``: ``tcp://<host>``), not to whatever the destination's host name
resolves to.
"""

from __future__ import annotations

import ipaddress
import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

import libvirt

from compute_agent.virt.driver import DriverError
from compute_agent.virt.libvirt import domain_xml
from compute_agent.virt.libvirt.disks import Disks
from shared.messages import HostCapacity, InstanceSpec
from shared.states import PowerState

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Every live migration: the guest keeps running, the destination keeps its definition, the
#: source forgets it.
BASE_FLAGS = (
    libvirt.VIR_MIGRATE_LIVE
    | libvirt.VIR_MIGRATE_PERSIST_DEST
    | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
)

#: libvirt's states of a guest that runs
_RUNNING = frozenset({libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED})


def migration_flags(*, p2p: bool, block_migration: bool) -> int:
    """The ``virDomainMigrate*`` flags of a live migration."""
    flags: int = BASE_FLAGS
    if p2p:
        flags |= libvirt.VIR_MIGRATE_PEER2PEER
    if block_migration:
        flags |= libvirt.VIR_MIGRATE_NON_SHARED_INC
    return flags


def migration_params(domain_xml: str, *, block_migration: bool) -> dict[str, Any]:
    """The typed parameters of a live migration: the disks to copy, for a block migration."""
    if not block_migration:
        return {}
    return {libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS: disk_targets(domain_xml)}


def disk_targets(domain_xml: str) -> list[str]:
    """The target devices (``vda``, …) of a domain's disks, in device order."""
    return [
        target.get("dev", "")
        for target in ET.fromstring(domain_xml).findall("devices/disk[@device='disk']/target")
        if target.get("dev")
    ]


def stream_params(dest_uri: str) -> dict[str, Any]:
    """Where the migration streams (memory, and disks by NBD) go: the host the destination's
    libvirt is reached at (none for a local URI: libvirt's default then); when that is an
    address, the destination listens on it (libvirt would listen on every address, and
    refuses loopback as a host's configured migration address)."""
    host = urlsplit(dest_uri).hostname
    if not host:
        return {}
    params: dict[str, Any] = {
        libvirt.VIR_MIGRATE_PARAM_URI: f"tcp://{host}" if ":" not in host else f"tcp://[{host}]"
    }
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return params
    params[libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS] = host
    return params


def peer_uri(uri: str, host: str) -> str:
    """Where the source reaches the destination's libvirt: the URI the destination reports,
    made remote with its host name when it is local (``qemu:///system`` ->
    ``qemu+tcp://<host>/system``). The test hypervisor's URIs name a file and stay as
    they are."""
    parts = urlsplit(uri)
    if parts.scheme == "test" or parts.netloc:
        return uri
    scheme = parts.scheme if "+" in parts.scheme else f"{parts.scheme}+tcp"
    return urlunsplit((scheme, host, parts.path, parts.query, parts.fragment))


def _open(uri: str) -> Any:
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise DriverError(f"cannot reach the destination's hypervisor at {uri}: {exc}") from exc


# --- how the running domain gets to the destination ------------------------------------------


class _Transfer(Protocol):
    def send(self, dom: Any, dest_uri: str, params: dict[str, Any], flags: int) -> str | None:
        """Move ``dom``; a handover (its definition) when the hypervisor could not."""

    def receive(self, conn: Any, instance: InstanceSpec, handover: str | None) -> None:
        """The destination's side, before it confirms the domain runs there."""


class _HypervisorMigration:
    """A real hypervisor moves the domain itself."""

    def send(self, dom: Any, dest_uri: str, params: dict[str, Any], flags: int) -> str | None:
        if flags & libvirt.VIR_MIGRATE_PEER2PEER:
            dom.migrateToURI3(dest_uri, params, flags)
            return None
        dconn = _open(dest_uri)
        try:
            dom.migrate3(dconn, params, flags)
        finally:
            dconn.close()
        return None

    def receive(self, conn: Any, instance: InstanceSpec, handover: str | None) -> None:
        """Nothing: the hypervisor has brought the domain (with PERSIST_DEST, defined); a
        handover is never taken from another host here."""


class _TestHypervisorHandover:
    """libvirt's test hypervisor cannot migrate (``virDomainMigrate*`` are not supported):
    the source checks the destination answers and hands the definition over; the domain is
    defined and started on the destination, and the original stays until the clean-up."""

    def send(self, dom: Any, dest_uri: str, params: dict[str, Any], flags: int) -> str | None:
        _open(dest_uri).close()
        log.info(
            "test hypervisor: handing %s over instead of migrating it (flags %#x, params %s)",
            dom.name(),
            flags,
            params,
        )
        xml: str = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE | libvirt.VIR_DOMAIN_XML_MIGRATABLE)
        return xml

    def receive(self, conn: Any, instance: InstanceSpec, handover: str | None) -> None:
        if handover is None:
            raise DriverError("the test hypervisor needs the server's definition handed over")
        _check_handover(handover, instance)
        dom = conn.defineXML(handover)
        if not dom.isActive():
            dom.create()


def _check_handover(handover: str, instance: InstanceSpec) -> None:
    """The definition another host hands over is defined here only if it is the server's
    (its name and uuid): a host cannot have anything else defined on another."""
    try:
        root = ET.fromstring(handover)
    except ET.ParseError as exc:
        raise DriverError(f"the handed-over definition is not XML: {exc}") from exc
    if (root.findtext("name"), root.findtext("uuid")) != (
        instance.domain_name,
        str(instance.server_id),
    ):
        raise DriverError(f"the handed-over definition is not {instance.domain_name}'s")


def transfer_for(uri: str) -> _Transfer:
    """How domains leave and reach the hypervisor at ``uri``."""
    return _TestHypervisorHandover() if uri.startswith("test://") else _HypervisorMigration()


# --- the driver's side -----------------------------------------------------------------------


class _Driver(Protocol):
    """What of ``LibvirtDriver`` the live migration steps use."""

    uri: str
    instances_dir: Path
    live_migration_p2p: bool
    _conn: Any
    _host: str | None

    @property
    def _is_test(self) -> bool: ...

    @property
    def _disks(self) -> Disks: ...

    def _find(self, domain_name: str) -> Any | None: ...

    def _undefine(self, dom: Any) -> None: ...

    def _booted(self, instance: InstanceSpec) -> None: ...

    def _config_drive(self, instance: InstanceSpec) -> Path | None: ...

    async def _blocking(self, what: str, call: Callable[..., T], *args: Any) -> T: ...

    async def capacity(self) -> HostCapacity: ...


class LibvirtLiveMigration:
    """The live migration methods of ``LibvirtDriver`` (mixed into it)."""

    async def prepare_live_migration(
        self: _Driver, instance: InstanceSpec, *, block_migration: bool
    ) -> None:
        capacity = await self.capacity()
        await self._blocking(
            "prepare to receive the server", _prepare, self, instance, capacity, block_migration
        )

    async def live_migrate(
        self: _Driver,
        instance: InstanceSpec,
        dest_host: str,
        dest_uri: str,
        *,
        block_migration: bool,
    ) -> str | None:
        return await self._blocking(
            "migrate the server",
            _migrate,
            self,
            instance,
            peer_uri(dest_uri, dest_host),
            block_migration,
        )

    async def finish_live_migration(
        self: _Driver, instance: InstanceSpec, *, handover: str | None
    ) -> PowerState:
        return await self._blocking("receive the server", _finish, self, instance, handover)

    async def clean_up_live_migration(
        self: _Driver, instance: InstanceSpec, *, block_migration: bool
    ) -> None:
        await self._blocking(
            "remove what is left of the server", _clean_up, self, instance, block_migration
        )

    async def recover_live_migration(self: _Driver, instance: InstanceSpec) -> PowerState:
        return await self._blocking("run the server again", _recover, self, instance)

    async def roll_back_live_migration(
        self: _Driver, instance: InstanceSpec, *, block_migration: bool
    ) -> None:
        await self._blocking("remove what was prepared for the server", _roll_back, self, instance)


def _prepare(
    host: _Driver, instance: InstanceSpec, capacity: HostCapacity, block_migration: bool
) -> None:
    """The destination's checks, then what receiving the server needs: its directory (and
    root disk, for a block migration), announced to the source. Checks come first, so a
    refusal leaves nothing."""
    if host._find(instance.domain_name) is not None:
        raise DriverError(f"a domain {instance.domain_name} is on this host already")
    flavor = instance.flavor
    if flavor.vcpus > capacity.vcpus or flavor.ram_mb > capacity.ram_mb:
        raise DriverError(
            f"this host ({capacity.vcpus} vCPUs, {capacity.ram_mb} MB) is too small for the "
            f"server ({flavor.vcpus} vCPUs, {flavor.ram_mb} MB)"
        )
    host._disks.prepare_arrival(instance, block_migration=block_migration)
    host._config_drive(instance)  # the guest keeps reading its drive, here from now on
    if not host._is_test:
        announce_arrival(host._conn, instance, host._disks.files(instance.server_id).dir)


def _migrate(
    host: _Driver, instance: InstanceSpec, dest_uri: str, block_migration: bool
) -> str | None:
    dom = host._find(instance.domain_name)
    if dom is None:
        log.info("%s is not here: it has left already", instance.domain_name)
        return None
    if not dom.isActive():
        raise DriverError(f"{instance.domain_name} is not running: a live migration moves a guest")
    flags = migration_flags(p2p=host.live_migration_p2p, block_migration=block_migration)
    params = migration_params(dom.XMLDesc(0), block_migration=block_migration)
    if not host._is_test:
        params.update(stream_params(dest_uri))
        params.update(_placement(host, dom, instance, dest_uri))
    log.info("live-migrating %s to %s (flags %#x)", instance.domain_name, dest_uri, flags)
    return transfer_for(host.uri).send(dom, dest_uri, params, flags)


def _finish(host: _Driver, instance: InstanceSpec, handover: str | None) -> PowerState:
    if host._find(instance.domain_name) is None:
        transfer_for(host.uri).receive(host._conn, instance, handover)
    dom = host._find(instance.domain_name)
    if dom is None or dom.state()[0] not in _RUNNING:
        raise DriverError(f"{instance.domain_name} does not run on host {host._host}")
    host._disks.arrived(instance.server_id)
    if not host._is_test:
        _forget_arrival(host._conn, instance)
    return PowerState.RUNNING


def _recover(host: _Driver, instance: InstanceSpec) -> PowerState:
    """A failed migration leaves the guest running, or at worst paused (the switch-over) or
    stopped: let it run again."""
    dom = host._find(instance.domain_name)
    if dom is None:
        raise DriverError(f"{instance.domain_name} is not on host {host._host} any more")
    state = dom.state()[0]
    if state == libvirt.VIR_DOMAIN_PAUSED:
        dom.resume()
    elif not dom.isActive():
        dom.create()
        host._booted(instance)
    return PowerState.RUNNING


def _clean_up(host: _Driver, instance: InstanceSpec, block_migration: bool) -> None:
    """Source: the domain goes if it is still here; its local disk only when the server's
    own copy went along (a block migration): otherwise it is on shared storage, in use on
    the other host."""
    dom = host._find(instance.domain_name)
    if dom is not None:
        host._undefine(dom)
    if block_migration:
        host._disks.remove(instance.server_id)


def _roll_back(host: _Driver, instance: InstanceSpec) -> None:
    """Destination: the domain goes if it came, running or not, and the files this host
    made for it (only those: never a shared disk)."""
    dom = host._find(instance.domain_name)
    if dom is not None:
        host._undefine(dom)
    host._disks.discard_arrival(instance.server_id)
    if not host._is_test:
        _forget_arrival(host._conn, instance)


# --- where the arriving server's files go ----------------------------------------------------


def arrival_pool(instance: InstanceSpec) -> str:
    """The name of the transient storage pool announcing the server's directory."""
    return f"stratus-arrival-{instance.server_id}"


def announce_arrival(conn: Any, instance: InstanceSpec, directory: Path) -> None:
    """Tell the source (through this host's libvirt) where the server's files go here. A
    libvirt without storage pools cannot: the source then keeps its own paths."""
    name = arrival_pool(instance)
    pool = ET.Element("pool", type="dir")
    ET.SubElement(pool, "name").text = name
    ET.SubElement(ET.SubElement(pool, "target"), "path").text = str(directory)
    try:
        conn.storagePoolLookupByName(name)
        return
    except libvirt.libvirtError:
        pass
    try:
        conn.storagePoolCreateXML(ET.tostring(pool, encoding="unicode"), 0)
    except libvirt.libvirtError as exc:
        log.warning("cannot announce where %s arrives (%s)", instance.domain_name, exc)


def _forget_arrival(conn: Any, instance: InstanceSpec) -> None:
    try:
        conn.storagePoolLookupByName(arrival_pool(instance)).destroy()
    except libvirt.libvirtError as exc:
        log.debug("no arrival pool of %s to remove (%s)", instance.domain_name, exc)


def _arrival_dir(dest_uri: str, instance: InstanceSpec) -> Path | None:
    """The server's directory on the destination, as it announced it (None if it did not)."""
    dconn = _open(dest_uri)
    try:
        pool = dconn.storagePoolLookupByName(arrival_pool(instance))
        path = ET.fromstring(pool.XMLDesc(0)).findtext("target/path")
    except libvirt.libvirtError:
        return None
    finally:
        dconn.close()
    return Path(path) if path else None


def _placement(host: _Driver, dom: Any, instance: InstanceSpec, dest_uri: str) -> dict[str, Any]:
    """The definitions the destination gets when its directory for the server is not the
    source's: the same domain, its files there."""
    here = host._disks.files(instance.server_id).dir
    there = _arrival_dir(dest_uri, instance)
    if there is None or there == here:
        return {}
    log.info("%s: its files go to %s on the destination", instance.domain_name, there)
    live = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE | libvirt.VIR_DOMAIN_XML_MIGRATABLE)
    persistent = dom.XMLDesc(
        libvirt.VIR_DOMAIN_XML_SECURE
        | libvirt.VIR_DOMAIN_XML_INACTIVE
        | libvirt.VIR_DOMAIN_XML_MIGRATABLE
    )
    return {
        libvirt.VIR_MIGRATE_PARAM_DEST_XML: domain_xml.relocate(live, here, there),
        libvirt.VIR_MIGRATE_PARAM_PERSIST_XML: domain_xml.relocate(persistent, here, there),
    }
