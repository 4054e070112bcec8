"""The libvirt driver: real domains on QEMU/KVM, or on libvirt's built-in test hypervisor.

libvirt calls block, so each runs in a worker thread; the event loop never waits on the
hypervisor. libvirt's own events (a guest that stopped by itself...) arrive in a thread of
their own and are handed to the agent (events.py). The connection to libvirtd is opened
again when it closes (libvirtd restarted): meanwhile every call fails at once with a
``DriverError`` saying libvirtd is unreachable, and afterwards the agent is told, to report
its servers again (connection.py).

On QEMU a server is a domain (domain_xml.py) of type kvm or qemu (virt_type.py) on a root
disk that is a qcow2 overlay on its image's file in the image store (images.py, disks.py).
Every operation is done for real: reboots through ACPI, snapshots while the guest runs
(snapshots.py), resizes and cold migrations moving the disk (resize.py), live migrations
(migration.py), passwords and network files through the guest agent (guest_agent.py).

With a ``test://`` URI (libvirt's in-process test hypervisor) the driver runs the same code
paths; the hypervisor just does not read the disk files, so none are made (``NoDisks``). Its
guests print nothing either: the driver itself logs what a booting guest prints
(fake_guest.py) to the server's console log at every start of its domain (``_booted``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import libvirt

from compute_agent import config_drive
from compute_agent.disk_full import DiskFull, no_space_detail, writing
from compute_agent.image_cache import ImageCache
from compute_agent.virt import fake_guest
from compute_agent.virt.driver import (
    DOMAIN_PREFIX,
    ComputeDriver,
    ConsoleEndpoint,
    ConsoleNotSupported,
    ConsoleUnavailable,
    DriverError,
    server_id_of,
)
from compute_agent.virt.libvirt import (
    console_log,
    consoles,
    domain_xml,
    events,
    guest_agent,
    marks,
    network,
    snapshots,
    virt_type,
)
from compute_agent.virt.libvirt.connection import (
    CurrentConnection,
    HypervisorUnreachable,
    LibvirtConnection,
)
from compute_agent.virt.libvirt.disks import Disks, LocalDisks, NoDisks, backing_files
from compute_agent.virt.libvirt.images import BootFiles, ImageStore
from compute_agent.virt.libvirt.migration import LibvirtLiveMigration
from compute_agent.virt.libvirt.remote_images import LoopRemoteImages
from compute_agent.virt.libvirt.resize import LibvirtResize
from shared.messages import (
    ConsoleProtocol,
    HostCapacity,
    InstanceSpec,
    NetworkAddress,
)
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

UNDEFINE_FLAGS = (
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


class LibvirtDriver(LibvirtResize, LibvirtLiveMigration, ComputeDriver):
    def __init__(
        self,
        uri: str,
        instances_dir: Path,
        *,
        vcpus: int | None = None,
        ram_mb: int | None = None,
        disk_gb: int | None = None,
        live_migration_p2p: bool = True,
        image_store: Path | None = None,
        virt_type: str = "auto",
        network: str = "",
        shutdown_timeout_s: float = 60.0,
        display_listen: str = "127.0.0.1",
        display_address: str | None = None,
        image_cache: ImageCache | None = None,
        keepalive_s: int = 5,
        reconnect_max_s: float = 30.0,
    ) -> None:
        """``image_store``: where images' files are (STRATUS_IMAGE_STORE_DIR; a real host
        without one boots nothing); ``virt_type``: auto, kvm or qemu; ``network``: the
        libvirt network of servers' NICs (empty: QEMU's user-mode networking);
        ``shutdown_timeout_s``: how long a guest may take to shut down or reboot when asked;
        ``display_listen``: where guests' displays listen (STRATUS_CONSOLE_LISTEN), reached
        by the console proxy at ``display_address`` (None: that listen address);
        ``image_cache``: bases downloaded from the image API and kept on this host, rather
        than read in place from a shared store. ``keepalive_s``, ``reconnect_max_s``: how
        a closed connection to libvirtd is noticed and reopened (connection.py)."""
        self.uri = uri
        self.instances_dir = instances_dir
        self._overrides = (vcpus, ram_mb, disk_gb)
        self.live_migration_p2p = live_migration_p2p
        self.image_cache = image_cache
        self._remote = LoopRemoteImages(image_cache) if image_cache is not None else None
        self.store = ImageStore(image_store, self._remote) if image_store is not None else None
        self.virt_type_setting = virt_type
        self.network = network
        #: how long a guest may take to shut down (or reboot) on request before it is
        #: powered off
        self.shutdown_timeout_s = shutdown_timeout_s
        self._connection = LibvirtConnection(
            uri, keepalive_s=keepalive_s, reconnect_max_s=reconnect_max_s
        )
        #: the open connection, whichever it is now (libvirtd may have restarted since);
        #: while there is none, every call fails at once (connection.py)
        self._conn: Any = CurrentConnection(self._connection)
        self._host: str | None = None
        self._domain_type = "test"
        self._events = events.DomainEvents()
        self._connection.on_connect(self._events.subscribe)  # on every new connection
        self._local_disks = LocalDisks(instances_dir, self.store, host="")
        self.display_listen = display_listen
        self.display_address = display_address
        #: the displays guests get here (init_host asks the hypervisor)
        self._displays: tuple[ConsoleProtocol, ...] = ("vnc",)

    @property
    def _is_test(self) -> bool:
        return self.uri.startswith("test://")

    @property
    def _disks(self) -> Disks:
        """The host's disks: none on the test hypervisor, which reads no files."""
        return NoDisks(self.instances_dir) if self._is_test else self._local_disks

    async def init_host(self, host: str) -> None:
        self._host = host
        if self._remote is not None:
            self._remote.bind()
        self._local_disks.host = host
        events.ensure_loop()  # before connecting: the connection's events and keepalives
        await self._connection.open()
        if not self._is_test:
            self.instances_dir.mkdir(parents=True, exist_ok=True)
            self._domain_type = await asyncio.to_thread(
                virt_type.choose, self._conn, self.virt_type_setting
            )
            log.info("servers on %s run as %s domains", self.uri, self._domain_type)
            self._displays = await asyncio.to_thread(
                consoles.supported_displays, self._conn, self._domain_type
            )

    async def close(self) -> None:
        await asyncio.to_thread(self._events.stop)
        await self._connection.close()

    @property
    def connection(self) -> LibvirtConnection:
        """The connection to libvirtd, and whether it is open now."""
        return self._connection

    def listen(self, listener: Callable[[str], None]) -> None:
        self._events.listen(asyncio.get_running_loop(), listener)

    def on_reconnect(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Await ``callback()`` each time the driver has reconnected to libvirtd after
        losing it: what happened to the domains meanwhile was not heard."""
        self._connection.on_reconnect(callback)

    async def capacity(self) -> HostCapacity:
        info = await self._blocking("read the host's resources", self._conn.getInfo)
        kind = await self._blocking("read the hypervisor type", self._conn.getType)
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
        return await self._blocking("list the domains", self._list_instances)

    def _list_instances(self) -> list[str]:
        names = (d.name() for d in self._conn.listAllDomains())
        return sorted(name for name in names if name.startswith(DOMAIN_PREFIX))

    async def power_states(self) -> dict[str, PowerState]:
        return await self._blocking("list the servers' power states", self._power_states)

    def _power_states(self) -> dict[str, PowerState]:
        states = {}
        for dom in self._conn.listAllDomains():
            name = dom.name()
            if not name.startswith(DOMAIN_PREFIX):
                continue
            try:
                states[name] = _power(dom)
            except libvirt.libvirtError as exc:  # undefined meanwhile
                if not _is_missing(exc):
                    raise
        return states

    # --- defining and finding domains ----------------------------------------------------

    def _boot_files(self, instance: InstanceSpec) -> BootFiles | None:
        """The kernel the server's image boots directly, if any (the test hypervisor
        loads nothing)."""
        if self._is_test or self.store is None:
            return None
        return self.store.boot_files(instance.image)

    def _define(self, instance: InstanceSpec) -> Any:
        """Define (or redefine: same name and uuid) the domain of ``instance``."""
        files = self._disks.files(instance.server_id)
        xml = domain_xml.build(
            instance,
            domain_type=self._domain_type,
            disk_path=files.disk,
            console_log=files.console,
            config_drive=self._config_drive(instance),
            boot=self._boot_files(instance),
            network=self.network,
            cache=self._disks.cache_mode(),
            displays=self._displays,
            display_listen=self.display_listen,
        )
        return self._conn.defineXML(xml)

    def _config_drive(self, instance: InstanceSpec) -> Path | None:
        """The server's config drive (None: it gets none), built here when this host has
        none of it yet: a new server, a migration's destination (the drive is made again
        from the spec, never carried along). One there already is kept: a running guest
        may be reading it."""
        if not instance.has_config_drive:
            return None
        path = self._disks.files(instance.server_id).config_drive
        if not path.exists():
            with writing(self.instances_dir, self._host):
                config_drive.write(path, instance)
        return path

    def _define_with_disk(self, instance: InstanceSpec) -> Any:
        """The server's root disk (made if missing), then its domain defined."""
        self._disks.ensure_root(instance)
        return self._define(instance)

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
            raise DriverError(f"server {domain_name} is not on host {self._host}")
        return dom

    def _state(self, dom: Any) -> PowerState:
        return _power(dom)

    def _booted(self, instance: InstanceSpec) -> None:
        """The domain of ``instance`` has just been started afresh (not resumed from saved
        memory): on the test hypervisor, whose guests print nothing, log what a booting
        guest prints; a real guest prints its own boot. A log that cannot be written costs
        the log, not the boot."""
        if not self._is_test:
            return
        path = self._disks.files(instance.server_id).console
        try:
            console_log.append(path, fake_guest.boot_lines(instance))
        except OSError as exc:
            log.warning("cannot log the boot of %s to %s: %s", instance.domain_name, path, exc)

    async def _blocking(self, what: str, call: Callable[..., T], *args: Any) -> T:
        """Run ``call`` in a worker thread; a libvirt error becomes a ``DriverError``, one
        that says libvirtd is unreachable when the connection turns out closed (libvirtd
        died under the call: the driver reconnects, or has already)."""
        generation = self._connection.reconnections
        try:
            return await asyncio.to_thread(call, *args)
        except libvirt.libvirtError as exc:
            alive = await asyncio.to_thread(self._connection.check)
            if not alive or self._connection.reconnections != generation:
                raise HypervisorUnreachable(
                    f"libvirt at {self.uri} is unreachable: could not {what}: {exc}"
                ) from exc
            raise DriverError(f"libvirt could not {what}: {exc}") from exc

    async def remove_unused_images(self, max_age_s: float) -> list[str]:
        if self.image_cache is None or self._is_test:
            return []
        in_use = await self._blocking("list the images in use", self._images_in_use)
        return await self.image_cache.sweep(in_use, max_age_s)

    def _images_in_use(self) -> set[Path]:
        """The files this host's disks are overlays on, and the kernels and initrds its
        domains boot."""
        used = backing_files(self.instances_dir)
        for dom in self._conn.listAllDomains():
            with contextlib.suppress(libvirt.libvirtError):  # undefined meanwhile
                used |= domain_xml.boot_paths(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        return used

    # --- consoles -------------------------------------------------------------------------

    async def get_console(self, domain_name: str, protocol: ConsoleProtocol) -> ConsoleEndpoint:
        if self._is_test:
            raise ConsoleNotSupported("libvirt's test hypervisor runs no display servers")
        if protocol not in self._displays:
            raise ConsoleUnavailable(f"QEMU on host {self._host} has no {protocol} display")
        return await self._blocking(
            "read the server's display",
            consoles.endpoint,
            self._conn,
            domain_name,
            protocol,
            self.display_address,
        )

    async def console_output(self, domain_name: str) -> str:
        """The end of the server's console log: its guest's serial port's, which its domain
        appends to (``InstanceFiles.console``; the test hypervisor's, ``_booted``)."""
        server_id = server_id_of(domain_name)
        if server_id is None:
            raise DriverError(f"{domain_name} is not a server's domain")
        await self._blocking("find the server", self._lookup, domain_name)
        path = self._disks.files(server_id).console
        try:
            return await asyncio.to_thread(console_log.read_end, path)
        except OSError as exc:
            raise DriverError(f"cannot read the console log of {domain_name}: {exc}") from exc

    # --- building and removing -----------------------------------------------------------

    async def spawn(self, instance: InstanceSpec, admin_pass: str) -> PowerState:
        """Build and start the server; a build that fails leaves nothing here (its domain,
        its directory; a download into ``_base`` removes its own partial file) and is a
        ``DriverError`` saying why, a full disk named as such (compute_agent/disk_full.py):
        the conductor puts the server in ERROR with it and releases the host's claim."""
        try:
            return await asyncio.to_thread(self._spawn, instance)
        except (libvirt.libvirtError, DriverError, OSError) as exc:
            failure = self._build_failure(exc)
            await self._remove_failed_build(instance)
            if failure is exc:
                raise
            raise failure from exc

    def _build_failure(self, exc: Exception) -> DriverError:
        """What a failed build reports: a full disk as ``DiskFull`` naming the directory and
        this host (where no writer named one: the instances directory, where the domain's
        files are), anything else as a ``DriverError``; never a bare ``OSError``, which the
        agent would not report (the command would be retried until dead-lettered)."""
        if isinstance(exc, DiskFull):
            return exc.on_host(self._host)
        detail = no_space_detail(exc)
        if detail is not None:
            return DiskFull(self.instances_dir, detail, self._host)
        if isinstance(exc, DriverError):
            return exc
        if isinstance(exc, libvirt.libvirtError):
            return DriverError(f"libvirt could not start the server: {exc}")
        return DriverError(f"could not write the server's files on host {self._host}: {exc}")

    async def _remove_failed_build(self, instance: InstanceSpec) -> None:
        """Remove the domain and files of a build that failed. One that cannot be removed
        now (libvirt went away meanwhile) is logged, not raised: the build's own failure is
        what is reported, and the server's delete removes the rest."""
        try:
            await self.destroy(instance.domain_name)
        except (libvirt.libvirtError, DriverError) as exc:
            log.error(
                "could not remove what the failed build of %s left: %s", instance.domain_name, exc
            )

    def _spawn(self, instance: InstanceSpec) -> PowerState:
        dom = self._find(instance.domain_name) or self._define_with_disk(instance)
        if not dom.isActive():
            dom.create()
            self._booted(instance)
        return _power(dom)

    async def destroy(self, domain_name: str) -> None:
        await asyncio.to_thread(self._destroy, domain_name)

    def _destroy(self, domain_name: str) -> None:
        """The domain powered off and undefined, and the server's files here removed."""
        try:
            dom = self._conn.lookupByName(domain_name)
        except libvirt.libvirtError as exc:
            if not _is_missing(exc):
                raise DriverError(f"libvirt could not find {domain_name}: {exc}") from exc
            dom = None
        if dom is not None:
            try:
                self._undefine(dom)
            except libvirt.libvirtError as exc:
                if not _is_missing(exc):
                    raise DriverError(f"libvirt could not remove {domain_name}: {exc}") from exc
        server_id = server_id_of(domain_name)
        if server_id is not None:
            self._disks.remove(server_id)

    def _undefine(self, dom: Any) -> None:
        if dom.isActive():
            dom.destroy()
        dom.undefineFlags(UNDEFINE_FLAGS)

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
        guest_agent.set_password(self._lookup(domain_name), _ADMIN_USER, password)

    async def reboot(
        self, instance: InstanceSpec, *, hard: bool, action_id: uuid.UUID
    ) -> PowerState:
        return await self._blocking("reboot the server", self._reboot, instance, hard, action_id)

    def _reboot(self, instance: InstanceSpec, hard: bool, action_id: uuid.UUID) -> PowerState:
        dom = self._find(instance.domain_name)
        if dom is not None and marks.done(dom, action_id):
            return _power(dom)
        if dom is None or hard or not dom.isActive() or not self._soft_reboot(dom):
            dom = self._power_cycle(instance, dom)
        self._booted(instance)
        marks.record(dom, action_id)
        return _power(dom)

    def _soft_reboot(self, dom: Any) -> bool:
        """Ask the guest to reboot (its ACPI power button: libvirt restarts it once it has
        shut down) and wait until it has; False when it would not, or not in time."""
        name = dom.name()
        waiter = self._events.expect_reboot(name)
        try:
            if not self._ask_reboot(dom):
                return False
            if self._is_test:
                return True  # the test hypervisor reboots at once, and says nothing
            return self._await_reboot(dom, waiter)
        finally:
            self._events.forget(name, waiter)

    def _ask_reboot(self, dom: Any) -> bool:
        for flags in (libvirt.VIR_DOMAIN_REBOOT_ACPI_POWER_BTN, 0):
            try:
                dom.reboot(flags)
                return True
            except libvirt.libvirtError as exc:
                log.info("soft reboot of %s refused (flags %#x): %s", dom.name(), flags, exc)
        return False

    def _await_reboot(self, dom: Any, waiter: events.RebootWaiter) -> bool:
        deadline = time.monotonic() + self.shutdown_timeout_s
        while time.monotonic() < deadline:
            if waiter.wait(0.5):
                return True
            if not dom.isActive():  # it shut down and was not restarted for us
                dom.create()
                return True
        log.info(
            "%s did not reboot within %.0f s of its ACPI request: rebooting it hard",
            dom.name(),
            self.shutdown_timeout_s,
        )
        return False

    def _power_cycle(self, instance: InstanceSpec, dom: Any | None) -> Any:
        """Power off (pull the plug) and on again; a lost domain (or disk) is made again."""
        if dom is not None and dom.isActive():
            dom.destroy()
        if dom is None:
            dom = self._define_with_disk(instance)
        else:
            self._disks.ensure_root(instance)
        dom.create()
        return dom

    async def rebuild(
        self, instance: InstanceSpec, admin_pass: str, *, action_id: uuid.UUID
    ) -> PowerState:
        return await self._blocking("rebuild the server", self._rebuild, instance, action_id)

    def _rebuild(self, instance: InstanceSpec, action_id: uuid.UUID) -> PowerState:
        """A new root disk on the new image, the domain defined again (same uuid, MAC and
        files), started; all the guest's data goes, as the guide says."""
        dom = self._find(instance.domain_name)
        if dom is not None and marks.done(dom, action_id):
            return _power(dom)
        self._check_bootable(instance)  # refuse before anything is lost
        if dom is not None:
            self._undefine(dom)
        self._disks.replace_root(instance)
        # a new drive too: the rebuild's files, the server's name and metadata as they are now
        self._disks.files(instance.server_id).config_drive.unlink(missing_ok=True)
        dom = self._define(instance)
        dom.create()
        self._booted(instance)
        marks.record(dom, action_id)
        return _power(dom)

    def _check_bootable(self, instance: InstanceSpec) -> None:
        if not self._is_test:
            if self.store is None:
                raise DriverError(f"host {self._host} has no image store to boot servers from")
            self.store.base(instance.image)
            self.store.boot_files(instance.image)

    async def snapshot(self, domain_name: str, image_id: uuid.UUID, dest: Path) -> int:
        return await self._blocking(
            "snapshot the server", self._snapshot, domain_name, image_id, dest
        )

    def _snapshot(self, domain_name: str, image_id: uuid.UUID, dest: Path) -> int:
        dom = self._lookup(domain_name)
        server_id = server_id_of(domain_name)
        if server_id is None:
            raise DriverError(f"{domain_name} is not a server's domain")
        disk = None if self._is_test else self._disks.files(server_id).disk
        return snapshots.write_image(dom, image_id, dest, disk=disk)

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
        state = dom.state()[0]
        if state == libvirt.VIR_DOMAIN_PAUSED:  # saved while paused
            dom.resume()
        elif state == libvirt.VIR_DOMAIN_PMSUSPENDED:  # the guest suspended itself (S3)
            dom.pMWakeup(0)
        return _power(dom)

    # --- os-stop / os-start ----------------------------------------------------------------

    async def power_off(self, domain_name: str) -> PowerState:
        return await self._blocking("stop the server", self._power_off_named, domain_name)

    def _power_off_named(self, domain_name: str) -> PowerState:
        dom = self._lookup(domain_name)
        self._power_off(dom)
        return _power(dom)

    async def power_on(self, instance: InstanceSpec) -> PowerState:
        return await self._blocking("start the server", self._power_on, instance)

    def _power_on(self, instance: InstanceSpec) -> PowerState:
        """Start the domain, defined again if it was lost (as a hard reboot would)."""
        dom = self._find(instance.domain_name) or self._define_with_disk(instance)
        if not dom.isActive():
            dom.create()
            self._booted(instance)
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
