"""What the libvirt driver asks of libvirt itself, with the binding but without QEMU: KVM or
emulation probed through a hypervisor's answer, where a live migration's stream goes, and, on
libvirt's test hypervisor, the events the driver hears."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from compute_agent.virt.libvirt import virt_type
from shared.states import PowerState
from tests.support.missing import LIBVIRT_BINDING
from tests.unit.test_libvirt_qemu_domains import an_instance, capabilities

libvirt = pytest.importorskip(
    "libvirt",
    reason=LIBVIRT_BINDING,
)

from compute_agent.virt.libvirt import migration  # noqa: E402
from compute_agent.virt.libvirt.driver import LibvirtDriver  # noqa: E402

# --- KVM or emulation ------------------------------------------------------------------------


class _Hypervisor:
    def __init__(self, capabilities: str | None) -> None:
        self.capabilities = capabilities

    def getDomainCapabilities(self, *args: object) -> str:
        if self.capabilities is None:
            raise libvirt.libvirtError("KVM is not supported by '/usr/bin/qemu-system-x86_64'")
        return self.capabilities


def test_the_domain_type_is_forced_or_probed() -> None:
    usable, unusable = _Hypervisor(capabilities("yes")), _Hypervisor(capabilities("no"))
    assert virt_type.choose(usable, "auto") == "kvm"
    assert virt_type.choose(unusable, "auto") == "qemu"
    assert virt_type.choose(_Hypervisor(None), "auto") == "qemu"
    assert virt_type.choose(unusable, "kvm") == "kvm"
    assert virt_type.choose(usable, "qemu") == "qemu"


# --- where a live migration goes -------------------------------------------------------------


def test_the_migration_stream_goes_where_the_destination_is_reached() -> None:
    assert migration.stream_params("qemu+tcp://127.0.0.1:16510/system") == {
        libvirt.VIR_MIGRATE_PARAM_URI: "tcp://127.0.0.1",
        libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS: "127.0.0.1",
    }
    assert migration.stream_params("qemu+tcp://compute-2/system") == {
        libvirt.VIR_MIGRATE_PARAM_URI: "tcp://compute-2"
    }
    assert migration.stream_params("qemu+tcp://[::1]:16509/system") == {
        libvirt.VIR_MIGRATE_PARAM_URI: "tcp://[::1]",
        libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS: "::1",
    }
    assert migration.stream_params("qemu:///system") == {}


# --- events, on the test hypervisor ----------------------------------------------------------


@pytest.fixture
async def driver(tmp_path: Path) -> AsyncIterator[LibvirtDriver]:
    the_driver = LibvirtDriver("test:///default", tmp_path / "instances")
    await the_driver.init_host("events-host")
    yield the_driver
    await the_driver.close()


async def _heard(heard: list[str], name: str, count: int = 1) -> None:
    for _ in range(200):
        if heard.count(name) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{name} was heard {heard.count(name)} times, not {count}")


async def test_the_driver_hears_a_guest_stop_behind_its_back(driver: LibvirtDriver) -> None:
    instance = an_instance()
    heard: list[str] = []
    driver.listen(heard.append)
    await driver.spawn(instance, "pw")
    await _heard(heard, instance.domain_name)  # it started
    other = libvirt.open("test:///default")  # someone else: the guest, an operator
    try:
        other.lookupByName(instance.domain_name).destroy()
    finally:
        other.close()
    await _heard(heard, instance.domain_name, 2)
    assert (await driver.power_states())[instance.domain_name] == PowerState.SHUTDOWN
    await driver.destroy(instance.domain_name)
    assert instance.domain_name not in await driver.power_states()


async def test_a_closed_driver_tells_nothing_more(driver: LibvirtDriver, tmp_path: Path) -> None:
    instance = an_instance()
    heard: list[str] = []
    driver.listen(heard.append)
    await driver.close()
    other = LibvirtDriver("test:///default", tmp_path / "other")
    await other.init_host("other")
    try:
        await other.spawn(instance, "pw")
        await other.destroy(instance.domain_name)
        await asyncio.sleep(0.2)
    finally:
        await other.close()
    assert instance.domain_name not in heard
