"""An in-memory hypervisor with the libvirt driver's behaviour, for hosts without libvirt.

``stratus up`` falls back to it when the libvirt binding is not installed, and simulated
clusters run hundreds of these in one process. It keeps the same rules as a real host:
names are unique, spawning twice is a no-op, destroying an absent server succeeds.
"""

from __future__ import annotations

from shared.messages import HostCapacity, InstanceSpec
from shared.states import PowerState

from .driver import ComputeDriver, DriverError


class FakeDriver(ComputeDriver):
    def __init__(self, *, vcpus: int = 16, ram_mb: int = 32768, disk_gb: int = 500) -> None:
        self._capacity = HostCapacity(
            hypervisor_type="fake",
            hypervisor_uri="fake://",
            vcpus=vcpus,
            ram_mb=ram_mb,
            disk_gb=disk_gb,
        )
        self.domains: dict[str, PowerState] = {}
        self._host: str | None = None

    async def init_host(self, host: str) -> None:
        self._host = host

    async def close(self) -> None:
        self._host = None

    async def capacity(self) -> HostCapacity:
        return self._capacity

    async def list_instances(self) -> list[str]:
        return sorted(self.domains)

    async def spawn(self, instance: InstanceSpec, admin_pass: str) -> PowerState:
        if self._host is None:
            raise DriverError("the fake hypervisor is not initialised")
        self.domains[instance.domain_name] = PowerState.RUNNING
        return PowerState.RUNNING

    async def destroy(self, domain_name: str) -> None:
        self.domains.pop(domain_name, None)

    async def power_state(self, domain_name: str) -> PowerState:
        return self.domains.get(domain_name, PowerState.NOSTATE)
