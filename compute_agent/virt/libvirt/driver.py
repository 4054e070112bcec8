"""The libvirt driver: real domains on QEMU/KVM, or on libvirt's built-in test hypervisor.

libvirt calls block, so each runs in a worker thread; the event loop never waits on the
hypervisor. With a ``test://`` URI (libvirt's in-process test hypervisor) the driver runs the
same code paths; the hypervisor just does not read the disk files, so none are made.

Disk work (copying a resized server's disk to another host, growing it) belongs with the
disk images of a later issue: today a resize redefines the domain with the new flavor, on
this host or on the destination, and the snapshot export runs ``qemu-img`` on real hosts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import libvirt

from compute_agent.virt.driver import ComputeDriver, DriverError
from compute_agent.virt.libvirt import domain_xml, marks, network, snapshots
from compute_agent.virt.libvirt.migration import LibvirtLiveMigration
from shared.messages import HostCapacity, InstanceSpec, NetworkAddress
from shared.states import PowerState

log = logging.getLogger(__name__)

T = TypeVar("T")

_POWER_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: PowerState.NOSTATE,
    libvirt.VIR_DOMAIN_RUNNING: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: PowerState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: PowerState.SHUTDOWN,
    libvirt.VIR_DOMAIN_SHUTOFF: PowerState.SHUTDOWN,
    libvirt.VIR_DOMAIN_CRASHED: PowerState.CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: PowerState.SUSPENDED,
}

_UNDEFINE_FLAGS = (
    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
)


def _ignore_libvirt_error(_ctx: object, _error: object) -> None:
    """libvirt prints every error to stderr by default; ours are raised and handled instead."""


libvirt.registerErrorHandler(_ignore_libvirt_error, None)


def _is_missing(exc: libvirt.libvirtError) -> bool:
    return bool(exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN)


def _power(dom: Any) -> PowerState:
    state = dom.state()[0]
    if state == libvirt.VIR_DOMAIN_SHUTOFF and dom.hasManagedSaveImage(0):
        return PowerState.SUSPENDED  # off, with its memory saved (suspend)
    return _POWER_STATES.get(state, PowerState.NOSTATE)


#: whose password ``changePassword`` sets in the guest
_ADMIN_USER = "root"


class LibvirtDriver(LibvirtLiveMigration, ComputeDriver):
    #: how long a guest may take to shut down on request before it is powered off
    shutdown_timeout_s = 60.0

    def __init__(
        self,
        uri: str,
        instances_dir: Path,
        *,
        vcpus: int | None = None,
        ram_mb: int | None = None,
        disk_gb: int | None = None,
        live_migration_p2p: bool = True,
    ) -> None:
        self.uri = uri
        self.instances_dir = instances_dir
        self._overrides = (vcpus, ram_mb, disk_gb)
        self.live_migration_p2p = live_migration_p2p
        self._conn: Any = None

    @property
    def _is_test(self) -> bool:
        return self.uri.startswith("test://")

    @property
    def _domain_type(self) -> str:
        return "test" if self._is_test else "kvm" if os.path.exists("/dev/kvm") else "qemu"

    async def init_host(self, host: str) -> None:
        try:
            self._conn = await asyncio.to_thread(libvirt.open, self.uri)
        except libvirt.libvirtError as exc:
            raise DriverError(f"cannot connect to libvirt at {self.uri}: {exc}") from exc
        if not self._is_test:
            self.instances_dir.mkdir(parents=True, exist_ok=True)

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await asyncio.to_thread(conn.close)

    async def capacity(self) -> HostCapacity:
        info = await asyncio.to_thread(self._conn.getInfo)
        kind = await asyncio.to_thread(self._conn.getType)
        vcpus, ram_mb, disk_gb = self._overrides
        return HostCapacity(
            hypervisor_type=str(kind).lower(),
            hypervisor_uri=self.uri,
            vcpus=vcpus if vcpus is not None else int(info[2]),
            ram_mb=ram_mb if ram_mb is not None else int(info[1]),
            disk_gb=disk_gb if disk_gb is not None else self._disk_gb(),
        )

    def _disk_gb(self) -> int:
        path = self.instances_dir if self.instances_dir.exists() else Path("/")
        return int(shutil.disk_usage(path).total // 1024**3)

    async def list_instances(self) -> list[str]:
        domains = await asyncio.to_thread(self._conn.listAllDomains)
        return sorted(d.name() for d in domains if d.name().startswith("instance-"))

    async def spawn(self, instance: InstanceSpec, admin_pass: str) -> PowerState:
        try:
            return await asyncio.to_thread(self._spawn, instance)
        except libvirt.libvirtError as exc:
            await self.destroy(instance.domain_name)
            raise DriverError(f"libvirt could not start the server: {exc}") from exc

    def _spawn(self, instance: InstanceSpec) -> PowerState:
        dom = self._find(instance.domain_name) or self._define(instance)
        if not dom.isActive():
            dom.create()
        return _power(dom)

    def _define(self, instance: InstanceSpec) -> Any:
        """Define (or redefine: same name and uuid) the domain of ``instance``."""
        xml = domain_xml.build(
            instance,
            domain_type=self._domain_type,
            disk_path=self.instances_dir / str(instance.server_id) / "disk",
        )
        return self._conn.defineXML(xml)

    def _find(self, domain_name: str) -> Any | None:
        """The domain, or None when this hypervisor has no such domain."""
        try:
            return self._conn.lookupByName(domain_name)
        except libvirt.libvirtError as exc:
            if _is_missing(exc):
                return None
            raise

    def _lookup(self, domain_name: str) -> Any:
        dom = self._find(domain_name)
        if dom is None:
            raise DriverError(f"server {domain_name} is not on this host")
        return dom

    async def _blocking(self, what: str, call: Callable[..., T], *args: Any) -> T:
        """Run ``call`` in a worker thread; a libvirt error becomes a ``DriverError``."""
        try:
            return await asyncio.to_thread(call, *args)
        except libvirt.libvirtError as exc:
            raise DriverError(f"libvirt could not {what}: {exc}") from exc

    async def destroy(self, domain_name: str) -> None:
        await asyncio.to_thread(self._destroy, domain_name)

    def _destroy(self, domain_name: str) -> None:
        try:
            dom = self._conn.lookupByName(domain_name)
        except libvirt.libvirtError as exc:
            if _is_missing(exc):
                return
            raise DriverError(f"libvirt could not find {domain_name}: {exc}") from exc
        try:
            uuid = dom.UUIDString()
            if dom.isActive():
                dom.destroy()
            dom.undefineFlags(_UNDEFINE_FLAGS)
        except libvirt.libvirtError as exc:
            if _is_missing(exc):
                return
            raise DriverError(f"libvirt could not remove {domain_name}: {exc}") from exc
        shutil.rmtree(self.instances_dir / uuid, ignore_errors=True)

    async def power_state(self, domain_name: str) -> PowerState:
        return await asyncio.to_thread(self._power_state, domain_name)

    def _power_state(self, domain_name: str) -> PowerState:
        try:
            return _power(self._conn.lookupByName(domain_name))
        except libvirt.libvirtError as exc:
            if _is_missing(exc):
                return PowerState.NOSTATE
            raise DriverError(str(exc)) from exc

    # --- server actions ------------------------------------------------------------------

    async def set_admin_password(self, domain_name: str, password: str) -> None:
        await self._blocking("set the password", self._set_admin_password, domain_name, password)

    def _set_admin_password(self, domain_name: str, password: str) -> None:
        # through the guest agent: fails for a guest that is not running or has no agent
        self._lookup(domain_name).setUserPassword(_ADMIN_USER, password, 0)

    async def reboot(
        self, instance: InstanceSpec, *, hard: bool, action_id: uuid.UUID
    ) -> PowerState:
        return await self._blocking("reboot the server", self._reboot, instance, hard, action_id)

    def _reboot(self, instance: InstanceSpec, hard: bool, action_id: uuid.UUID) -> PowerState:
        dom = self._find(instance.domain_name)
        if dom is not None and marks.done(dom, action_id):
            return _power(dom)
        if dom is not None and not hard and dom.isActive():
            try:
                dom.reboot(0)  # the guest is told (ACPI) and restarts on its own
            except libvirt.libvirtError as exc:
                log.info("soft reboot of %s refused (%s): rebooting hard", dom.name(), exc)
                hard = True
        else:
            hard = True
        if hard:
            dom = self._power_cycle(instance, dom)
        marks.record(dom, action_id)
        return _power(dom)

    def _power_cycle(self, instance: InstanceSpec, dom: Any | None) -> Any:
        """Power off (pull the plug) and on again; a lost domain is defined again first."""
        if dom is not None and dom.isActive():
            dom.destroy()
        if dom is None:
            dom = self._define(instance)
        dom.create()
        return dom

    async def rebuild(
        self, instance: InstanceSpec, admin_pass: str, *, action_id: uuid.UUID
    ) -> PowerState:
        return await self._blocking("rebuild the server", self._rebuild, instance, action_id)

    def _rebuild(self, instance: InstanceSpec, action_id: uuid.UUID) -> PowerState:
        dom = self._find(instance.domain_name)
        if dom is not None and marks.done(dom, action_id):
            return _power(dom)
        self._destroy(instance.domain_name)  # all its data goes, as the guide says
        power = self._spawn(instance)
        marks.record(self._lookup(instance.domain_name), action_id)
        return power

    async def snapshot(self, domain_name: str, image_id: uuid.UUID, dest: Path) -> int:
        return await self._blocking(
            "snapshot the server", self._snapshot, domain_name, image_id, dest
        )

    def _snapshot(self, domain_name: str, image_id: uuid.UUID, dest: Path) -> int:
        if dest.exists():
            return dest.stat().st_size
        dom = self._lookup(domain_name)
        return snapshots.write_image(dom, image_id, dest, has_disks=not self._is_test)

    async def migrate_disk_and_power_off(
        self, instance: InstanceSpec, dest_host: str
    ) -> PowerState:
        return await self._blocking(
            "power the server off", self._migrate_disk_and_power_off, instance.domain_name
        )

    def _migrate_disk_and_power_off(self, domain_name: str) -> PowerState:
        dom = self._lookup(domain_name)
        self._power_off(dom)
        return _power(dom)

    def _power_off(self, dom: Any) -> None:
        """Ask the guest to shut down; pull the plug if it has not within the timeout."""
        if not dom.isActive():
            return
        try:
            dom.shutdown()
        except libvirt.libvirtError as exc:
            log.info("graceful shutdown of %s refused (%s): powering it off", dom.name(), exc)
        else:
            deadline = time.monotonic() + self.shutdown_timeout_s
            while dom.isActive() and time.monotonic() < deadline:
                time.sleep(0.5)
        if dom.isActive():
            dom.destroy()

    async def finish_migration(self, instance: InstanceSpec, *, same_host: bool) -> PowerState:
        return await self._blocking(
            "start the resized server", self._finish_migration, instance, same_host
        )

    def _finish_migration(self, instance: InstanceSpec, same_host: bool) -> PowerState:
        try:
            return self._run_with_flavor(instance)
        except libvirt.libvirtError:
            if not same_host:  # on the same host the disk in use is the original's
                self._destroy(instance.domain_name)
            raise

    async def confirm_migration(self, domain_name: str, *, same_host: bool) -> None:
        if not same_host:
            await self._blocking("remove the original", self._destroy, domain_name)

    async def finish_revert_migration(self, instance: InstanceSpec) -> PowerState:
        return await self._blocking("restart the original server", self._run_with_flavor, instance)

    def _run_with_flavor(self, instance: InstanceSpec) -> PowerState:
        """Make the domain be defined with ``instance.flavor`` and running."""
        dom = self._find(instance.domain_name)
        if dom is not None:
            defined = domain_xml.flavor_id(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
            if defined == instance.flavor.id:
                if not dom.isActive():
                    dom.create()
                return _power(dom)
            if dom.isActive():
                dom.destroy()
        dom = self._define(instance)
        dom.create()
        return _power(dom)

    # --- admin actions -------------------------------------------------------------------

    async def pause(self, domain_name: str) -> PowerState:
        return await self._blocking("pause the server", self._pause, domain_name)

    def _pause(self, domain_name: str) -> PowerState:
        dom = self._lookup(domain_name)
        if dom.state()[0] != libvirt.VIR_DOMAIN_PAUSED:
            if not dom.isActive():
                raise DriverError(f"cannot pause {domain_name}: it is not running")
            dom.suspend()  # libvirt's "suspend" freezes the vCPUs: the API's pause
        return _power(dom)

    async def unpause(self, domain_name: str) -> PowerState:
        return await self._blocking("unpause the server", self._unpause, domain_name)

    def _unpause(self, domain_name: str) -> PowerState:
        dom = self._lookup(domain_name)
        if not dom.isActive():
            raise DriverError(f"cannot unpause {domain_name}: it is not running")
        if dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
            dom.resume()
        return _power(dom)

    async def suspend(self, domain_name: str) -> PowerState:
        return await self._blocking("suspend the server", self._suspend, domain_name)

    def _suspend(self, domain_name: str) -> PowerState:
        """The memory goes to a managed save image; the domain stops."""
        dom = self._lookup(domain_name)
        if dom.isActive():
            dom.managedSave(0)
        elif not dom.hasManagedSaveImage(0):
            raise DriverError(f"cannot suspend {domain_name}: it is not running")
        return _power(dom)

    async def resume(self, domain_name: str) -> PowerState:
        return await self._blocking("resume the server", self._resume, domain_name)

    def _resume(self, domain_name: str) -> PowerState:
        """Starting a domain with a managed save image restores it from that image."""
        dom = self._lookup(domain_name)
        if not dom.isActive():
            if not dom.hasManagedSaveImage(0):
                raise DriverError(f"cannot resume {domain_name}: it has no saved memory")
            dom.create()
        if dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:  # saved while paused
            dom.resume()
        return _power(dom)

    async def inject_network_info(self, domain_name: str, addresses: list[NetworkAddress]) -> None:
        await self._blocking(
            "inject the network information", self._inject_network_info, domain_name, addresses
        )

    def _inject_network_info(self, domain_name: str, addresses: list[NetworkAddress]) -> None:
        network.inject(self._lookup(domain_name), addresses)

    async def reset_network(self, domain_name: str, addresses: list[NetworkAddress]) -> None:
        await self._blocking("reset the network", self._reset_network, domain_name, addresses)

    def _reset_network(self, domain_name: str, addresses: list[NetworkAddress]) -> None:
        dom = self._lookup(domain_name)
        network.inject(dom, addresses)
        bounced = network.bounce_links(dom)
        log.info("network of %s re-applied (%d interface(s) restarted)", domain_name, bounced)
