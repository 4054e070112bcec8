"""An in-memory hypervisor with the libvirt driver's behaviour, for hosts without libvirt.

``stratus up`` falls back to it when the libvirt binding is not installed, and simulated
clusters run hundreds of these in one process. It keeps the same rules as a real host:
names are unique, spawning twice is a no-op, destroying an absent server succeeds, a guest
that is not running cannot have its password set.

Tests (and simulations) can also make it behave like a troubled host: ``fail_next`` makes an
operation fail once, as a hypervisor error would; ``hold`` makes an operation wait until
released, like a slow hypervisor, so the states of a running action can be watched; and
``guest_power`` makes a guest change its power by itself (shut down, crash...), which the
driver tells its listener, as a hypervisor's lifecycle event would.

Its guests have no displays of their own: an in-memory guest draws nothing. ``displays``
says where the displays of this host's running guests are served, by protocol, when
something serves them (a test's stand-in for QEMU's VNC server); empty, as by default, the
hypervisor has no consoles, as nova's drivers without them answered. What they print on
their serial console is fake_guest.py's: each start of a guest logs its boot lines, kept with
the domain (``FakeDomain.console``) until it is destroyed.

Given an ``instances_dir``, it builds each server's config drive there as the libvirt driver
does (``<instances_dir>/<server id>/disk.config``, compute_agent/config_drive.py: the same
code), at each start of the guest, and removes it with the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from shared.messages import ConsoleProtocol, HostCapacity, InstanceSpec, NetworkAddress
from shared.states import PowerState

from .. import config_drive
from . import fake_guest
from .driver import (
    ComputeDriver,
    ConsoleEndpoint,
    ConsoleNotReady,
    ConsoleNotSupported,
    ConsoleUnavailable,
    DriverError,
    console_text,
    server_id_of,
)

#: the console lines a fake domain keeps, its last (more than ``MAX_CONSOLE_BYTES`` of
#: boot lines: the log answers as a real one would, and a simulated host that reboots its
#: servers for days does not grow)
CONSOLE_LINES = 4096


@dataclass
class FakeDomain:
    """A server on the fake hypervisor: what it was defined as, and what it went through."""

    instance: InstanceSpec
    power: PowerState = PowerState.RUNNING
    #: how many times it was started (created, rebooted, rebuilt, resized)
    boots: int = 0
    admin_pass: str = ""
    last_action: uuid.UUID | None = None
    #: the network configuration last injected, and how often the guest was told to take
    #: its network up again
    network: tuple[NetworkAddress, ...] = ()
    network_resets: int = 0
    #: what its guest printed on its serial console, line by line, across its boots
    console: deque[str] = field(default_factory=lambda: deque(maxlen=CONSOLE_LINES))

    def boot(self) -> None:
        """The guest starts (again): it runs, and prints its boot on its console."""
        self.boots += 1
        self.power = PowerState.RUNNING
        self.console.extend(fake_guest.boot_lines(self.instance))


#: The fake hypervisors of this process by URI (``fake://<host>``), so that one can hand a
#: live-migrating server to another, as libvirt daemons reach each other: a driver is here
#: from its ``init_host`` to its ``close``; a host initialised again takes its URI over.
_HYPERVISORS: dict[str, FakeDriver] = {}


class FakeDriver(ComputeDriver):
    def __init__(
        self,
        *,
        vcpus: int = 16,
        ram_mb: int = 32768,
        disk_gb: int = 500,
        instances_dir: Path | None = None,
    ) -> None:
        self._capacity = HostCapacity(
            hypervisor_type="fake",
            hypervisor_uri="fake://",
            vcpus=vcpus,
            ram_mb=ram_mb,
            disk_gb=disk_gb,
        )
        self.domains: dict[str, FakeDomain] = {}
        self._host: str | None = None
        self._failures: dict[str, str] = {}
        self._holds: dict[str, asyncio.Event] = {}
        #: servers this host prepared to receive by live migration
        self.arriving: set[str] = set()
        self._listener: Callable[[str], None] | None = None
        #: where the displays of running guests are served, by protocol (none by default)
        self.displays: dict[ConsoleProtocol, ConsoleEndpoint] = {}
        #: where servers' config drives are built (None: nowhere, the guest being in memory)
        self.instances_dir = instances_dir

    # --- behaving like a troubled host ---------------------------------------------------

    def fail_next(self, operation: str, message: str) -> None:
        """The next call of ``operation`` (a method name, e.g. ``"reboot"``) raises
        ``DriverError(message)`` before doing anything."""
        self._failures[operation] = message

    def hold(self, operation: str) -> asyncio.Event:
        """Calls of ``operation`` wait until the returned event is set (then it is gone)."""
        event = asyncio.Event()
        self._holds[operation] = event
        return event

    def guest_power(self, domain_name: str, power: PowerState) -> None:
        """The guest changes its power by itself (``SHUTDOWN``: it shut down; ``CRASHED``...):
        the listener hears of it, as from a hypervisor's lifecycle event."""
        self._domain(domain_name).power = power
        if self._listener is not None:
            self._listener(domain_name)

    async def _enter(self, operation: str) -> None:
        if self._host is None:
            raise DriverError("the fake hypervisor is not initialised")
        event = self._holds.get(operation)
        if event is not None:
            await event.wait()
            self._holds.pop(operation, None)
        message = self._failures.pop(operation, None)
        if message is not None:
            raise DriverError(message)

    def _domain(self, domain_name: str) -> FakeDomain:
        domain = self.domains.get(domain_name)
        if domain is None:
            raise DriverError(f"server {domain_name} is not on host {self._host}")
        return domain

    def drive_path(self, server_id: uuid.UUID) -> Path | None:
        """Where the server's config drive is on this host (None: drives are not built)."""
        if self.instances_dir is None:
            return None
        return self.instances_dir / str(server_id) / config_drive.FILE_NAME

    def _build_drive(self, instance: InstanceSpec) -> None:
        """The server's config drive as the guest about to boot reads it (fresh: a rebuild
        delivers its own files, and one that leaves nothing to deliver, no drive); a few
        kilobytes, built in memory."""
        path = self.drive_path(instance.server_id)
        if path is None:
            return
        if instance.has_config_drive:
            config_drive.write(path, instance)
        else:
            path.unlink(missing_ok=True)

    def _remove_drive(self, domain_name: str) -> None:
        """The server left this host: its drive goes, unless another hypervisor of this
        process that shares the directory runs it now (a migration between fake hosts)."""
        server_id = server_id_of(domain_name)
        path = None if server_id is None else self.drive_path(server_id)
        if path is None:
            return
        for other in _HYPERVISORS.values():
            sharing = other is not self and other.instances_dir == self.instances_dir
            if sharing and (domain_name in other.domains or domain_name in other.arriving):
                return
        path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # absent, or holding what is not the drive's
            path.parent.rmdir()

    def _start(
        self,
        instance: InstanceSpec,
        *,
        admin_pass: str | None = None,
        last_action: uuid.UUID | None = None,
    ) -> FakeDomain:
        """Define ``instance`` (again) and start it, keeping its history where not given."""
        previous = self.domains.get(instance.domain_name)
        domain = FakeDomain(instance)
        if previous is not None:
            domain.boots = previous.boots
            domain.admin_pass = previous.admin_pass
            domain.last_action = previous.last_action
            domain.network = previous.network
            domain.network_resets = previous.network_resets
            domain.console = previous.console
        self._build_drive(instance)
        domain.boot()
        if admin_pass is not None:
            domain.admin_pass = admin_pass
        if last_action is not None:
            domain.last_action = last_action
        self.domains[instance.domain_name] = domain
        return domain

    # --- the driver interface ------------------------------------------------------------

    async def init_host(self, host: str) -> None:
        self._host = host
        self._capacity = self._capacity.model_copy(update={"hypervisor_uri": f"fake://{host}"})
        _HYPERVISORS[self._capacity.hypervisor_uri] = self

    async def close(self) -> None:
        if _HYPERVISORS.get(self._capacity.hypervisor_uri) is self:
            del _HYPERVISORS[self._capacity.hypervisor_uri]
        self._host = None

    def listen(self, listener: Callable[[str], None]) -> None:
        self._listener = listener

    async def capacity(self) -> HostCapacity:
        return self._capacity

    async def list_instances(self) -> list[str]:
        return sorted(self.domains)

    async def spawn(self, instance: InstanceSpec, admin_pass: str) -> PowerState:
        await self._enter("spawn")
        domain = self.domains.get(instance.domain_name)
        if domain is None:
            domain = self._start(instance, admin_pass=admin_pass)
        return domain.power

    async def destroy(self, domain_name: str) -> None:
        await self._enter("destroy")
        self.domains.pop(domain_name, None)
        self._remove_drive(domain_name)

    async def power_state(self, domain_name: str) -> PowerState:
        domain = self.domains.get(domain_name)
        return domain.power if domain is not None else PowerState.NOSTATE

    async def set_admin_password(self, domain_name: str, password: str) -> None:
        await self._enter("set_admin_password")
        domain = self._domain(domain_name)
        if domain.power is not PowerState.RUNNING:
            raise DriverError(f"cannot set the password of {domain_name}: it is not running")
        domain.admin_pass = password

    async def reboot(
        self, instance: InstanceSpec, *, hard: bool, action_id: uuid.UUID
    ) -> PowerState:
        await self._enter("reboot")
        domain = self.domains.get(instance.domain_name)
        if domain is not None and domain.last_action == action_id:
            return domain.power
        if domain is None:
            domain = self._start(instance)
        else:
            domain.boot()
        domain.last_action = action_id
        return domain.power

    async def rebuild(
        self, instance: InstanceSpec, admin_pass: str, *, action_id: uuid.UUID
    ) -> PowerState:
        await self._enter("rebuild")
        domain = self.domains.get(instance.domain_name)
        if domain is not None and domain.last_action == action_id:
            return domain.power
        return self._start(instance, admin_pass=admin_pass, last_action=action_id).power

    async def snapshot(self, domain_name: str, image_id: uuid.UUID, dest: Path) -> int:
        await self._enter("snapshot")
        domain = self._domain(domain_name)
        return await asyncio.to_thread(_write_image, domain, dest)

    async def migrate_disk_and_power_off(
        self, instance: InstanceSpec, dest_host: str
    ) -> PowerState:
        await self._enter("migrate_disk_and_power_off")
        domain = self._domain(instance.domain_name)
        domain.power = PowerState.SHUTDOWN
        return domain.power

    async def finish_migration(self, instance: InstanceSpec, *, same_host: bool) -> PowerState:
        try:
            await self._enter("finish_migration")
        except DriverError:
            if not same_host:
                self.domains.pop(instance.domain_name, None)
            raise
        return self._run_with_flavor(instance)

    async def confirm_migration(self, domain_name: str, *, same_host: bool) -> None:
        await self._enter("confirm_migration")
        if not same_host:
            self.domains.pop(domain_name, None)
            self._remove_drive(domain_name)

    async def finish_revert_migration(self, instance: InstanceSpec) -> PowerState:
        await self._enter("finish_revert_migration")
        return self._run_with_flavor(instance)

    # --- live migration: the fake hypervisor moves a server itself, as a real one does ---

    async def prepare_live_migration(
        self, instance: InstanceSpec, *, block_migration: bool
    ) -> None:
        await self._enter("prepare_live_migration")
        if instance.domain_name in self.domains:
            raise DriverError(f"server {instance.domain_name} is on this host already")
        self._build_drive(instance)  # the running guest keeps reading its drive here
        self.arriving.add(instance.domain_name)

    async def live_migrate(
        self, instance: InstanceSpec, dest_host: str, dest_uri: str, *, block_migration: bool
    ) -> str | None:
        await self._enter("live_migrate")
        name = instance.domain_name
        domain = self.domains.get(name)
        if domain is None:
            return None  # it has left already
        if domain.power is not PowerState.RUNNING:
            raise DriverError(f"cannot live-migrate {name}: it is not running")
        target = _HYPERVISORS.get(dest_uri)
        if target is None or target is self:
            raise DriverError(f"cannot reach the hypervisor of {dest_host} at {dest_uri}")
        if name not in target.arriving:
            raise DriverError(f"{dest_host} has not prepared to receive {name}")
        target.domains[name] = self.domains.pop(name)
        return None

    async def finish_live_migration(
        self, instance: InstanceSpec, *, handover: str | None
    ) -> PowerState:
        # a fake hypervisor never hands a server over (``live_migrate`` returns None)
        await self._enter("finish_live_migration")
        self.arriving.discard(instance.domain_name)
        domain = self.domains.get(instance.domain_name)
        if domain is None or domain.power is not PowerState.RUNNING:
            raise DriverError(f"server {instance.domain_name} does not run on host {self._host}")
        return domain.power

    async def clean_up_live_migration(
        self, instance: InstanceSpec, *, block_migration: bool
    ) -> None:
        await self._enter("clean_up_live_migration")
        self.domains.pop(instance.domain_name, None)
        self._remove_drive(instance.domain_name)

    async def recover_live_migration(self, instance: InstanceSpec) -> PowerState:
        await self._enter("recover_live_migration")
        domain = self._domain(instance.domain_name)
        domain.power = PowerState.RUNNING
        return domain.power

    async def roll_back_live_migration(
        self, instance: InstanceSpec, *, block_migration: bool
    ) -> None:
        await self._enter("roll_back_live_migration")
        self.arriving.discard(instance.domain_name)
        self.domains.pop(instance.domain_name, None)
        self._remove_drive(instance.domain_name)

    # --- admin actions -------------------------------------------------------------------

    async def _switch(
        self, domain_name: str, operation: str, start: PowerState, end: PowerState
    ) -> PowerState:
        """``operation`` takes the domain from ``start`` to ``end``; done already when it is
        there (a command delivered again)."""
        await self._enter(operation)
        domain = self._domain(domain_name)
        if domain.power is not end:
            _require(domain, domain_name, start, operation)
            domain.power = end
        return domain.power

    async def pause(self, domain_name: str) -> PowerState:
        return await self._switch(domain_name, "pause", PowerState.RUNNING, PowerState.PAUSED)

    async def unpause(self, domain_name: str) -> PowerState:
        return await self._switch(domain_name, "unpause", PowerState.PAUSED, PowerState.RUNNING)

    async def suspend(self, domain_name: str) -> PowerState:
        await self._enter("suspend")
        domain = self._domain(domain_name)
        if domain.power is not PowerState.SUSPENDED:
            if domain.power not in (PowerState.RUNNING, PowerState.PAUSED):
                raise DriverError(f"cannot suspend {domain_name}: it is not running")
            domain.power = PowerState.SUSPENDED
        return domain.power

    async def resume(self, domain_name: str) -> PowerState:
        return await self._switch(domain_name, "resume", PowerState.SUSPENDED, PowerState.RUNNING)

    async def power_off(self, domain_name: str) -> PowerState:
        await self._enter("power_off")
        domain = self._domain(domain_name)
        domain.power = PowerState.SHUTDOWN
        return domain.power

    async def power_on(self, instance: InstanceSpec) -> PowerState:
        await self._enter("power_on")
        domain = self.domains.get(instance.domain_name)
        if domain is None:
            return self._start(instance).power
        if domain.power is not PowerState.RUNNING:
            _require(domain, instance.domain_name, PowerState.SHUTDOWN, "power on")
            domain.boot()
        return domain.power

    async def inject_network_info(self, domain_name: str, addresses: list[NetworkAddress]) -> None:
        await self._enter("inject_network_info")
        self._domain(domain_name).network = tuple(addresses)

    async def reset_network(self, domain_name: str, addresses: list[NetworkAddress]) -> None:
        await self._enter("reset_network")
        domain = self._domain(domain_name)
        domain.network = tuple(addresses)
        if domain.power is PowerState.RUNNING:
            domain.network_resets += 1

    def _run_with_flavor(self, instance: InstanceSpec) -> PowerState:
        domain = self.domains.get(instance.domain_name)
        if (
            domain is not None
            and domain.instance.flavor == instance.flavor
            and domain.power is PowerState.RUNNING
        ):
            return domain.power
        return self._start(instance).power

    # --- consoles ------------------------------------------------------------------------

    async def get_console(self, domain_name: str, protocol: ConsoleProtocol) -> ConsoleEndpoint:
        """A running guest's display, where ``displays`` says."""
        await self._enter("get_console")
        if not self.displays:
            raise ConsoleNotSupported("the fake hypervisor serves no consoles")
        domain = self.domains.get(domain_name)
        if domain is None or domain.power is not PowerState.RUNNING:
            raise ConsoleNotReady(f"server {domain_name} is not running on this host")
        endpoint = self.displays.get(protocol)
        if endpoint is None:
            raise ConsoleUnavailable(f"the fake hypervisor serves no {protocol} console")
        return endpoint

    async def console_output(self, domain_name: str) -> str:
        """What the guest printed (its boots, fake_guest.py), a line end after each line."""
        await self._enter("console_output")
        lines = self._domain(domain_name).console
        return console_text("".join(f"{line}\n" for line in lines).encode())


def _require(domain: FakeDomain, name: str, power: PowerState, operation: str) -> None:
    """``DriverError`` unless the domain is in ``power`` (what ``operation`` starts from)."""
    if domain.power is not power:
        state = domain.power.name.lower()
        raise DriverError(f"cannot {operation} {name}: it is {state}, not {power.name.lower()}")


def _write_image(domain: FakeDomain, dest: Path) -> int:
    """The fake image of a domain is its definition; written aside, then renamed."""
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(f".{dest.name}.partial")
        partial.write_text(domain.instance.model_dump_json())
        os.replace(partial, dest)
    return dest.stat().st_size
