"""The libvirt driver: real domains on QEMU/KVM, or on libvirt's built-in test hypervisor.

libvirt calls block, so each runs in a worker thread; the event loop never waits on the
hypervisor. With a ``test://`` URI (libvirt's in-process test hypervisor) the driver runs the
same code paths; the hypervisor just does not read the disk files, so none are made.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import libvirt

from compute_agent.virt.driver import ComputeDriver, DriverError
from compute_agent.virt.libvirt import domain_xml
from shared.messages import HostCapacity, InstanceSpec
from shared.states import PowerState

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


class LibvirtDriver(ComputeDriver):
    def __init__(
        self,
        uri: str,
        instances_dir: Path,
        *,
        vcpus: int | None = None,
        ram_mb: int | None = None,
        disk_gb: int | None = None,
    ) -> None:
        self.uri = uri
        self.instances_dir = instances_dir
        self._overrides = (vcpus, ram_mb, disk_gb)
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
        try:
            dom = self._conn.lookupByName(instance.domain_name)
        except libvirt.libvirtError as exc:
            if not _is_missing(exc):
                raise
            xml = domain_xml.build(
                instance,
                domain_type=self._domain_type,
                disk_path=self.instances_dir / str(instance.server_id) / "disk",
            )
            dom = self._conn.defineXML(xml)
        if not dom.isActive():
            dom.create()
        return _POWER_STATES.get(dom.state()[0], PowerState.NOSTATE)

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
            state = self._conn.lookupByName(domain_name).state()[0]
        except libvirt.libvirtError as exc:
            if _is_missing(exc):
                return PowerState.NOSTATE
            raise DriverError(str(exc)) from exc
        return _POWER_STATES.get(state, PowerState.NOSTATE)
