"""The virt driver interface: everything the agent asks of a hypervisor.

The agent speaks only to this interface; ``libvirt`` and ``fake`` implement it. Every method
is idempotent, because the bus may deliver a command twice: spawning a server that already
runs, or destroying one that is already gone, succeeds without doing anything.
"""

from __future__ import annotations

import abc

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
