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
from pathlib import Path

from shared.messages import HostCapacity, InstanceSpec
from shared.states import PowerState


class DriverError(Exception):
    """The hypervisor refused or failed an operation; the message is fit for a server fault."""


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
