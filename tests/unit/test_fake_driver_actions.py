"""The fake hypervisor keeps a real host's rules for the server actions, and can be made slow
or failing on purpose."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest

from compute_agent.virt.driver import DriverError
from compute_agent.virt.fake import FakeDriver
from shared.messages import FlavorSpec, ImageSpec, InstanceSpec
from shared.states import PowerState

TINY = FlavorSpec(id="1", name="m1.tiny", vcpus=1, ram_mb=512, disk_gb=1)
SMALL = FlavorSpec(id="2", name="m1.small", vcpus=1, ram_mb=2048, disk_gb=20)


def _instance(flavor: FlavorSpec = TINY) -> InstanceSpec:
    return InstanceSpec(
        server_id=uuid.uuid4(),
        name="web",
        flavor=flavor,
        image=ImageSpec(id=uuid.uuid4(), name="cirros"),
    )


@pytest.fixture
async def driver() -> FakeDriver:
    the_driver = FakeDriver()
    await the_driver.init_host("fake-host")
    return the_driver


async def test_a_password_needs_a_running_guest(driver: FakeDriver) -> None:
    instance = _instance()
    await driver.spawn(instance, "first")
    await driver.set_admin_password(instance.domain_name, "second")
    assert driver.domains[instance.domain_name].admin_pass == "second"
    await driver.migrate_disk_and_power_off(instance, "elsewhere")
    with pytest.raises(DriverError, match="not running"):
        await driver.set_admin_password(instance.domain_name, "third")


async def test_reboot_and_rebuild_happen_once_per_action(driver: FakeDriver) -> None:
    instance = _instance()
    await driver.spawn(instance, "pw")
    action = uuid.uuid4()
    await driver.reboot(instance, hard=True, action_id=action)
    await driver.reboot(instance, hard=True, action_id=action)
    assert driver.domains[instance.domain_name].boots == 2
    rebuild = uuid.uuid4()
    await driver.rebuild(instance, "new", action_id=rebuild)
    await driver.rebuild(instance, "new", action_id=rebuild)
    assert driver.domains[instance.domain_name].boots == 3
    assert driver.domains[instance.domain_name].admin_pass == "new"


async def test_the_flavor_changes_once_and_back(driver: FakeDriver) -> None:
    old = _instance(TINY)
    new = old.model_copy(update={"flavor": SMALL})
    await driver.spawn(old, "pw")
    await driver.migrate_disk_and_power_off(old, "fake-host")
    await driver.finish_migration(new, same_host=True)
    await driver.finish_migration(new, same_host=True)
    domain = driver.domains[old.domain_name]
    assert (domain.instance.flavor, domain.power, domain.boots) == (SMALL, PowerState.RUNNING, 2)
    await driver.finish_revert_migration(old)
    assert driver.domains[old.domain_name].instance.flavor == TINY


async def test_snapshot_writes_an_image_file_once(driver: FakeDriver, tmp_path: Path) -> None:
    instance = _instance()
    await driver.spawn(instance, "pw")
    dest = tmp_path / "store" / "image.qcow2"
    size = await driver.snapshot(instance.domain_name, uuid.uuid4(), dest)
    assert size == dest.stat().st_size > 0
    assert json.loads(dest.read_text())["server_id"] == str(instance.server_id)
    assert await driver.snapshot(instance.domain_name, uuid.uuid4(), dest) == size
    assert [p.name for p in dest.parent.iterdir()] == ["image.qcow2"]


async def test_fail_next_fails_one_call_and_a_failed_finish_elsewhere_cleans_up(
    driver: FakeDriver,
) -> None:
    instance = _instance()
    driver.fail_next("finish_migration", "no room")
    with pytest.raises(DriverError, match="no room"):
        await driver.finish_migration(instance, same_host=False)
    assert instance.domain_name not in driver.domains
    assert await driver.finish_migration(instance, same_host=False) == PowerState.RUNNING


async def test_hold_makes_an_operation_wait_until_released(driver: FakeDriver) -> None:
    instance = _instance()
    await driver.spawn(instance, "pw")
    release = driver.hold("reboot")
    reboot = asyncio.create_task(driver.reboot(instance, hard=True, action_id=uuid.uuid4()))
    await asyncio.sleep(0.05)
    assert not reboot.done()
    release.set()
    assert await reboot == PowerState.RUNNING
    # released for good: the next reboot does not wait
    await asyncio.wait_for(driver.reboot(instance, hard=True, action_id=uuid.uuid4()), 1)
