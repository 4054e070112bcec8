"""The virt driver interface: everything the agent asks of a hypervisor.

The agent speaks only to this interface; ``libvirt`` and ``fake`` implement it. Every method
is idempotent, because the bus may deliver a command twice: spawning a server that already
runs, or destroying one that is already gone, succeeds without doing anything. Operations
that a second run would repeat rather than find done (a reboot, a rebuild) take the id of the
action they serve and do nothing when the server already carries it.

Resizes take two hosts (the same one twice on a one-host setup): the *source* powers the
server off and hands its disk over (``migrate_disk_and_power_off``), the *destination* runs
it with the new flavor (``finish_migration``); then the source either discards the original
(``confirm_migration``), or the destination destroys its copy (``destroy``) and the source
runs the original again (``finish_revert_migration``).
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from shared import rpcapi
from shared.messages import ConsoleProtocol, HostCapacity, InstanceSpec, NetworkAddress
from shared.states import PowerState


class DriverError(Exception):
    """The hypervisor refused or failed an operation; the message is fit for a server fault."""


class ConsoleNotSupported(DriverError):
    """This hypervisor gives its guests no consoles at all (nova: the driver does not
    implement consoles)."""


class ConsoleUnavailable(DriverError):
    """The guest has no console of the protocol asked for (a QEMU without SPICE, a domain
    defined without graphics)."""


class ConsoleNotReady(DriverError):
    """The guest is not running on this host now, so its display listens nowhere."""


@dataclass(frozen=True)
class ConsoleEndpoint:
    """Where a running guest's display server listens, as the gateway's console proxy
    reaches it."""

    host: str
    port: int


#: the most of a console log a driver gives, its end (nova's libvirt driver's
#: MAX_CONSOLE_BYTES): a guest that has printed for months answers as fast as a new one
MAX_CONSOLE_BYTES = 100 * 1024


def console_text(log: bytes) -> str:
    """The end of a console log as a driver gives it: its last ``MAX_CONSOLE_BYTES``, decoded
    (a guest prints what it likes: bytes that are no UTF-8 become U+FFFD)."""
    return log[-MAX_CONSOLE_BYTES:].decode("utf-8", errors="replace")


#: what every server's domain name starts with, as shared/rpcapi.py's ``domain_name`` names
#: them (the one place the convention lives): what precedes a server's id there
DOMAIN_PREFIX = rpcapi.domain_name(uuid.UUID(int=0)).removesuffix(str(uuid.UUID(int=0)))


def server_id_of(domain_name: str) -> uuid.UUID | None:
    """The server a domain name belongs to; None for a domain that is not a server's."""
    if not domain_name.startswith(DOMAIN_PREFIX):
        return None
    try:
        return uuid.UUID(domain_name[len(DOMAIN_PREFIX) :])
    except ValueError:
        return None


class ComputeDriver(abc.ABC):
    @abc.abstractmethod
    async def init_host(self, host: str) -> None:
        """Connect to the hypervisor; called once before any other method."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the hypervisor connection."""

    @abc.abstractmethod
    async def capacity(self) -> HostCapacity:
        """What this host offers: vCPUs, RAM (MB) and disk (GB) before any overcommit."""

    @abc.abstractmethod
    async def list_instances(self) -> list[str]:
        """Domain names of the servers this driver manages on the host."""

    async def remove_unused_images(self, max_age_s: float) -> list[str]:
        """Remove the images this host keeps for its servers' disks (downloaded from the
        image API) that no disk uses and that were not used for ``max_age_s``; what was
        removed. A hypervisor that keeps no images has none to remove."""
        return []

    @abc.abstractmethod
    async def spawn(self, instance: InstanceSpec, admin_pass: str) -> PowerState:
        """Create and start the server; return its power state once started.

        Raises ``DriverError`` when it cannot; whatever was half-built is removed first.
        """

    @abc.abstractmethod
    async def destroy(self, domain_name: str) -> None:
        """Power the server off and remove it and its local files; absent is fine."""

    @abc.abstractmethod
    async def power_state(self, domain_name: str) -> PowerState:
        """The hypervisor's view of the server; ``NOSTATE`` when it does not exist."""

    # --- what the hypervisor tells on its own --------------------------------------------

    @abc.abstractmethod
    def listen(self, listener: Callable[[str], None]) -> None:
        """From now on (after ``init_host``), call ``listener(domain_name)`` in the caller's
        event loop whenever the hypervisor tells that a server's power changed: it started,
        stopped, was paused or resumed, crashed; whoever caused it, a command or the guest
        itself. What a hypervisor does not tell, the agent's periodic look at
        ``power_states`` finds."""

    async def power_states(self) -> dict[str, PowerState]:
        """The power state of every server this driver manages on the host, by domain name."""
        return {name: await self.power_state(name) for name in await self.list_instances()}

    # --- server actions ------------------------------------------------------------------

    @abc.abstractmethod
    async def set_admin_password(self, domain_name: str, password: str) -> None:
        """Set the guest's administrator password (through its guest agent).

        Raises ``DriverError`` when the hypervisor or the guest cannot (a guest that is not
        running, no agent, a hypervisor without the feature).
        """

    @abc.abstractmethod
    async def reboot(
        self, instance: InstanceSpec, *, hard: bool, action_id: uuid.UUID
    ) -> PowerState:
        """Restart the server; return its power state afterwards.

        Soft: ask the guest OS to restart (a guest that is not running, or cannot be asked,
        gets a hard reboot instead). Hard: power it off and on again, redefining it from
        ``instance`` if the hypervisor lost it. Nothing happens when the server's last
        action already was ``action_id``.
        """

    @abc.abstractmethod
    async def rebuild(
        self, instance: InstanceSpec, admin_pass: str, *, action_id: uuid.UUID
    ) -> PowerState:
        """Wipe the server (domain and disks) and build it again from ``instance.image``,
        keeping its identity; return its power state. Nothing happens when the server's
        last action already was ``action_id``. Raises ``DriverError``."""

    @abc.abstractmethod
    async def snapshot(self, domain_name: str, image_id: uuid.UUID, dest: Path) -> int:
        """Write an image of the server's disk to ``dest`` (whole or not at all) and return
        its size in bytes; the server keeps running. A ``dest`` that exists already is
        the result of an earlier run: its size is returned and nothing is done.
        Raises ``DriverError``."""

    @abc.abstractmethod
    async def migrate_disk_and_power_off(
        self, instance: InstanceSpec, dest_host: str
    ) -> PowerState:
        """Source side of a resize: power the server off (gracefully first) and make its
        disk available to ``dest_host``, keeping its definition for a revert. A server
        already off is fine. On failure the server is left running."""

    @abc.abstractmethod
    async def finish_migration(self, instance: InstanceSpec, *, same_host: bool) -> PowerState:
        """Destination side: run the server with ``instance.flavor``; one already running
        with that flavor is fine. On failure, what was built is removed, unless
        ``same_host`` (where the original's disk is the one in use, for the rollback)."""

    @abc.abstractmethod
    async def confirm_migration(self, domain_name: str, *, same_host: bool) -> None:
        """Source side of a confirmed resize: discard the original and its files (on the
        same host the definition was replaced in place: nothing is left to discard)."""

    @abc.abstractmethod
    async def finish_revert_migration(self, instance: InstanceSpec) -> PowerState:
        """Source side of a revert (or of the rollback of a failed resize): run the original
        again with ``instance.flavor``, the old one, redefining it if needed."""

    # --- admin actions (guide 3.1) ------------------------------------------------------

    @abc.abstractmethod
    async def pause(self, domain_name: str) -> PowerState:
        """Freeze the running server in memory; return its power state (PAUSED). A server
        already paused is fine; one that is not running raises ``DriverError``."""

    @abc.abstractmethod
    async def unpause(self, domain_name: str) -> PowerState:
        """Let a paused server run on; one already running is fine, one that is not running
        at all raises ``DriverError``."""

    @abc.abstractmethod
    async def suspend(self, domain_name: str) -> PowerState:
        """Save the server's memory to the host's disk and stop it; return its power state
        (SUSPENDED). A server already suspended is fine; one that is not running (nor
        paused) raises ``DriverError``."""

    @abc.abstractmethod
    async def resume(self, domain_name: str) -> PowerState:
        """Run a suspended server again from its saved memory; one already running is fine.
        A server with no saved memory raises ``DriverError`` (starting it afresh would lose
        what the guest had in memory: that is a reboot, not a resume)."""

    # --- os-stop / os-start ----------------------------------------------------------------

    @abc.abstractmethod
    async def power_off(self, domain_name: str) -> PowerState:
        """Shut the server down, asking the guest first and pulling the plug if it has not
        stopped in time; it stays defined. Return its power state (SHUTDOWN). A server
        already off is fine; one not on this host raises ``DriverError``."""

    @abc.abstractmethod
    async def power_on(self, instance: InstanceSpec) -> PowerState:
        """Start a stopped server (defining it again from ``instance`` if the hypervisor lost
        it) and return its power state (RUNNING); one already running is fine. Raises
        ``DriverError``."""

    @abc.abstractmethod
    async def inject_network_info(self, domain_name: str, addresses: list[NetworkAddress]) -> None:
        """Put the server's network configuration (its fixed ``addresses``) where the guest
        can read it, replacing what was there. Raises ``DriverError``."""

    @abc.abstractmethod
    async def reset_network(self, domain_name: str, addresses: list[NetworkAddress]) -> None:
        """Re-apply the server's network configuration: inject ``addresses`` as
        ``inject_network_info`` does, then have a running guest take its network up again.
        Raises ``DriverError``."""

    # --- live migration ------------------------------------------------------------------
    # Two hosts, one running server that keeps running: the destination prepares
    # (``prepare_live_migration``), the source moves the server (``live_migrate``), the
    # destination confirms it runs there (``finish_live_migration``) and the source removes
    # what is left of it (``clean_up_live_migration``). After a failure the source makes sure
    # the server runs there (``recover_live_migration``) before the destination removes what
    # it prepared or received (``roll_back_live_migration``): nothing ever removes the only
    # running copy. ``block_migration`` says the server's local disks go along; without it
    # they are on storage both hosts share, which neither may remove.

    @abc.abstractmethod
    async def prepare_live_migration(
        self, instance: InstanceSpec, *, block_migration: bool
    ) -> None:
        """Destination: check that this host can run ``instance`` (nothing of that name is
        here already, the flavor fits the host) and make what receiving it needs. Doing it
        again before the server arrives is fine. Raises ``DriverError``, leaving nothing
        behind (a repeated command once the server is here is refused, and changes
        nothing)."""

    @abc.abstractmethod
    async def live_migrate(
        self, instance: InstanceSpec, dest_host: str, dest_uri: str, *, block_migration: bool
    ) -> str | None:
        """Source: move the running server to the hypervisor of ``dest_host``, which its
        agent reports at ``dest_uri``, without stopping it. Returns None when the hypervisor
        moved it (it is gone from here); a hypervisor that cannot migrate (libvirt's test
        one) returns the server's definition instead, a *handover* for
        ``finish_live_migration``, and keeps the server until ``clean_up_live_migration``.
        A server no longer here has left already (a repeated command): None. On failure
        (``DriverError``) the server still runs here."""

    @abc.abstractmethod
    async def finish_live_migration(
        self, instance: InstanceSpec, *, handover: str | None
    ) -> PowerState:
        """Destination: with a ``handover``, define and start the server from it (once);
        then confirm it runs here and return its power state. Raises ``DriverError`` when
        it does not run here."""

    @abc.abstractmethod
    async def clean_up_live_migration(
        self, instance: InstanceSpec, *, block_migration: bool
    ) -> None:
        """Source, once the server runs on the destination: remove whatever is left of it
        here (a definition, its local disks when they went along); nothing left is fine."""

    @abc.abstractmethod
    async def recover_live_migration(self, instance: InstanceSpec) -> PowerState:
        """Source, after a failed migration: make sure the server runs here (resuming or
        starting it) and return its power state. Raises ``DriverError`` when it is not here
        any more."""

    @abc.abstractmethod
    async def roll_back_live_migration(
        self, instance: InstanceSpec, *, block_migration: bool
    ) -> None:
        """Destination, after a failed migration, once the source runs the server again:
        remove what was prepared or received here (a definition, running or not; the local
        disks only with ``block_migration``); nothing there is fine."""

    # --- consoles (nova's os-consoles) ----------------------------------------------------

    async def get_console(self, domain_name: str, protocol: ConsoleProtocol) -> ConsoleEndpoint:
        """Where the display (``protocol``) of the running server listens, read from the
        hypervisor now (ports are chosen when a guest starts, so they are never remembered).
        Raises ``ConsoleNotSupported`` (the default: a hypervisor without consoles),
        ``ConsoleUnavailable`` or ``ConsoleNotReady``."""
        raise ConsoleNotSupported(f"this hypervisor gives {domain_name} no {protocol} console")

    # --- console output (nova's os-console-output) ----------------------------------------

    @abc.abstractmethod
    async def console_output(self, domain_name: str) -> str:
        """What the server's guest printed on its serial console, across its boots: the end
        of the log (``console_text``). The log outlives a stop (a stopped server shows how it
        ended); a guest that printed nothing yet has an empty one. Raises ``DriverError`` when
        the server is not on this host."""
