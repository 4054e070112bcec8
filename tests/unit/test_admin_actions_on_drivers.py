"""The admin actions' operations of the virt drivers: the fake one, and the libvirt one on
libvirt's test hypervisor (pause is libvirt's suspend, suspend its managed save, resume
starts from that save; the network configuration goes into the domain's metadata)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from compute_agent.virt.driver import ComputeDriver, DriverError
from compute_agent.virt.factory import libvirt_available
from compute_agent.virt.fake import FakeDriver
from shared.messages import FlavorSpec, ImageSpec, InstanceSpec, NetworkAddress
from shared.states import PowerState
from tests.support.missing import LIBVIRT_BINDING

TINY = FlavorSpec(id="1", name="m1.tiny", vcpus=1, ram_mb=512, disk_gb=1)
ADDRESSES = [
    NetworkAddress(network="private", version=4, addr="10.0.0.5"),
    NetworkAddress(network="private6", version=6, addr="fd00:1::5"),
]

_NODE = """<node>
  <cpu><mhz>2000</mhz><model>i686</model><active>8</active><max>8</max><nodes>1</nodes>
       <sockets>1</sockets><cores>8</cores><threads>1</threads></cpu>
  <memory>16777216</memory>
</node>"""


def _instance() -> InstanceSpec:
    return InstanceSpec(
        server_id=uuid.uuid4(),
        name="web",
        flavor=TINY,
        image=ImageSpec(id=uuid.uuid4(), name="cirros"),
    )


@pytest.fixture(params=["fake", "libvirt"])
async def driver(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ComputeDriver]:
    the_driver: ComputeDriver
    if request.param == "fake":
        the_driver = FakeDriver()
    else:
        if not libvirt_available():
            pytest.skip(LIBVIRT_BINDING)
        from compute_agent.virt.libvirt.driver import LibvirtDriver

        node = tmp_path / "node.xml"
        node.write_text(_NODE)  # a hypervisor of this test's own
        the_driver = LibvirtDriver(f"test://{node}", tmp_path / "instances")
    await the_driver.init_host("host")
    yield the_driver
    await the_driver.close()


async def _running(driver: ComputeDriver) -> str:
    instance = _instance()
    await driver.spawn(instance, "pw")
    return instance.domain_name


async def test_pause_freezes_and_unpause_thaws_each_once(driver: ComputeDriver) -> None:
    name = await _running(driver)
    assert await driver.pause(name) is PowerState.PAUSED
    assert await driver.pause(name) is PowerState.PAUSED  # a redelivered command
    assert await driver.power_state(name) is PowerState.PAUSED
    assert await driver.unpause(name) is PowerState.RUNNING
    assert await driver.unpause(name) is PowerState.RUNNING
    assert await driver.power_state(name) is PowerState.RUNNING


async def test_suspend_saves_the_memory_and_resume_runs_from_it(driver: ComputeDriver) -> None:
    name = await _running(driver)
    assert await driver.suspend(name) is PowerState.SUSPENDED
    assert await driver.suspend(name) is PowerState.SUSPENDED
    assert await driver.power_state(name) is PowerState.SUSPENDED
    with pytest.raises(DriverError, match="pause"):
        await driver.pause(name)  # a suspended guest is not running
    assert await driver.resume(name) is PowerState.RUNNING
    assert await driver.resume(name) is PowerState.RUNNING
    assert await driver.power_state(name) is PowerState.RUNNING


async def test_a_paused_server_can_be_suspended_and_resumes_running(
    driver: ComputeDriver,
) -> None:
    name = await _running(driver)
    await driver.pause(name)
    assert await driver.suspend(name) is PowerState.SUSPENDED
    assert await driver.resume(name) is PowerState.RUNNING


async def test_resume_without_saved_memory_and_unknown_servers_fail(
    driver: ComputeDriver,
) -> None:
    instance = _instance()
    await driver.spawn(instance, "pw")
    await driver.migrate_disk_and_power_off(instance, "elsewhere")  # powered off, nothing saved
    with pytest.raises(DriverError, match="resume"):
        await driver.resume(instance.domain_name)
    with pytest.raises(DriverError, match="unpause"):
        await driver.unpause(instance.domain_name)
    with pytest.raises(DriverError, match="suspend"):
        await driver.suspend(instance.domain_name)
    for operation in (driver.pause, driver.unpause, driver.suspend, driver.resume):
        with pytest.raises(DriverError, match="is not on host"):
            await operation("instance-nobody")


async def test_network_information_is_injected_replacing_the_old(driver: ComputeDriver) -> None:
    name = await _running(driver)
    await driver.inject_network_info(name, ADDRESSES)
    await driver.inject_network_info(name, ADDRESSES[:1])
    assert await _injected(driver, name) == ADDRESSES[:1]
    await driver.reset_network(name, ADDRESSES)
    assert await _injected(driver, name) == ADDRESSES
    with pytest.raises(DriverError, match="is not on host"):
        await driver.reset_network("instance-nobody", ADDRESSES)


async def _injected(driver: ComputeDriver, name: str) -> list[NetworkAddress]:
    if isinstance(driver, FakeDriver):
        return list(driver.domains[name].network)
    from compute_agent.virt.libvirt import network
    from compute_agent.virt.libvirt.driver import LibvirtDriver

    assert isinstance(driver, LibvirtDriver)
    return network.injected(driver._conn.lookupByName(name))


async def test_the_fake_host_counts_network_resets_of_running_guests() -> None:
    driver = FakeDriver()
    await driver.init_host("host")
    name = await _running(driver)
    await driver.reset_network(name, ADDRESSES)
    await driver.suspend(name)
    await driver.reset_network(name, ADDRESSES)  # a stopped guest has no network to restart
    assert driver.domains[name].network_resets == 1


def test_libvirt_link_updates_keep_each_interface_and_set_its_link() -> None:
    if not libvirt_available():
        pytest.skip(LIBVIRT_BINDING)
    from compute_agent.virt.libvirt import network

    live = """<domain><devices>
      <interface type='network'><mac address='52:54:00:aa:bb:01'/><source network='a'/></interface>
      <interface type='bridge'><mac address='52:54:00:aa:bb:02'/><link state='up'/></interface>
      <disk type='file'/>
    </devices></domain>"""
    down = network.link_updates(live, "down")
    assert len(down) == 2
    assert all('<link state="down" />' in device for device in down)
    assert "52:54:00:aa:bb:01" in down[0] and 'source network="a"' in down[0]
    assert network.link_updates("<domain><devices/></domain>", "up") == []
