"""The libvirt driver's server actions, on libvirt's test hypervisor.

Each test gets hypervisors of its own (``test:///<node file>``: every connection opens a
private one), so a resize can go from one "host" to another.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from compute_agent.virt.driver import DriverError
from compute_agent.virt.libvirt import domain_xml
from shared.messages import FlavorSpec, ImageSpec, InstanceSpec
from shared.states import PowerState
from tests.support.missing import LIBVIRT_BINDING

libvirt = pytest.importorskip("libvirt", reason=LIBVIRT_BINDING)

from compute_agent.virt.libvirt.driver import LibvirtDriver  # noqa: E402

TINY = FlavorSpec(id="1", name="m1.tiny", vcpus=1, ram_mb=512, disk_gb=1)
SMALL = FlavorSpec(id="2", name="m1.small", vcpus=2, ram_mb=2048, disk_gb=20)
#: a flavor the hypervisor refuses (no vCPU): a failure to start the server
BROKEN = FlavorSpec(id="broken", name="broken", vcpus=0, ram_mb=512, disk_gb=1)

_NODE = """<node>
  <cpu><mhz>2000</mhz><model>i686</model><active>8</active><max>8</max><nodes>1</nodes>
       <sockets>1</sockets><cores>8</cores><threads>1</threads></cpu>
  <memory>16777216</memory>
</node>"""


def _instance(flavor: FlavorSpec = TINY, server_id: uuid.UUID | None = None) -> InstanceSpec:
    return InstanceSpec(
        server_id=server_id or uuid.uuid4(),
        name="web",
        flavor=flavor,
        image=ImageSpec(id=uuid.uuid4(), name="cirros"),
    )


async def _host(tmp_path: Path, name: str) -> LibvirtDriver:
    node = tmp_path / "node.xml"
    node.write_text(_NODE)
    driver = LibvirtDriver(f"test://{node}", tmp_path / name)
    await driver.init_host(name)
    return driver


@pytest.fixture
async def driver(tmp_path: Path) -> LibvirtDriver:
    return await _host(tmp_path, "a")


def _dom(driver: LibvirtDriver, instance: InstanceSpec) -> object:
    return driver._conn.lookupByName(instance.domain_name)


# --- changePassword --------------------------------------------------------------------------


async def test_the_password_is_set_only_in_a_running_guest(driver: LibvirtDriver) -> None:
    instance = _instance()
    await driver.spawn(instance, "pw")
    await driver.set_admin_password(instance.domain_name, "new")
    _dom(driver, instance).destroy()  # type: ignore[attr-defined]
    with pytest.raises(DriverError, match="not running"):
        await driver.set_admin_password(instance.domain_name, "new")
    with pytest.raises(DriverError, match="is not on host"):
        await driver.set_admin_password("instance-nobody", "new")


# --- reboot ----------------------------------------------------------------------------------


async def test_soft_reboot_keeps_the_domain_running_and_hard_reboot_power_cycles(
    driver: LibvirtDriver,
) -> None:
    instance = _instance()
    await driver.spawn(instance, "pw")
    started = _dom(driver, instance).ID()  # type: ignore[attr-defined]
    assert await driver.reboot(instance, hard=False, action_id=uuid.uuid4()) == PowerState.RUNNING
    assert _dom(driver, instance).ID() == started  # type: ignore[attr-defined]
    assert await driver.reboot(instance, hard=True, action_id=uuid.uuid4()) == PowerState.RUNNING
    assert _dom(driver, instance).ID() != started  # type: ignore[attr-defined]


async def test_a_reboot_is_done_once_per_action(driver: LibvirtDriver) -> None:
    instance = _instance()
    await driver.spawn(instance, "pw")
    action = uuid.uuid4()
    await driver.reboot(instance, hard=True, action_id=action)
    after_first = _dom(driver, instance).ID()  # type: ignore[attr-defined]
    await driver.reboot(instance, hard=True, action_id=action)
    assert _dom(driver, instance).ID() == after_first  # type: ignore[attr-defined]
    await driver.reboot(instance, hard=True, action_id=uuid.uuid4())
    assert _dom(driver, instance).ID() != after_first  # type: ignore[attr-defined]


async def test_a_soft_reboot_of_a_stopped_guest_starts_it(driver: LibvirtDriver) -> None:
    instance = _instance()
    await driver.spawn(instance, "pw")
    _dom(driver, instance).destroy()  # type: ignore[attr-defined]
    assert await driver.reboot(instance, hard=False, action_id=uuid.uuid4()) == PowerState.RUNNING


async def test_a_hard_reboot_defines_a_lost_domain_again(driver: LibvirtDriver) -> None:
    instance = _instance()
    assert await driver.reboot(instance, hard=True, action_id=uuid.uuid4()) == PowerState.RUNNING
    assert instance.domain_name in await driver.list_instances()


# --- rebuild ---------------------------------------------------------------------------------


async def test_rebuild_recreates_the_domain_from_the_new_image_once(
    driver: LibvirtDriver,
) -> None:
    instance = _instance()
    await driver.spawn(instance, "pw")
    uuid_before = _dom(driver, instance).UUIDString()  # type: ignore[attr-defined]
    rebuilt = instance.model_copy(update={"image": ImageSpec(id=uuid.uuid4(), name="debian")})
    action = uuid.uuid4()
    assert await driver.rebuild(rebuilt, "pw2", action_id=action) == PowerState.RUNNING
    dom = _dom(driver, instance)
    assert dom.UUIDString() == uuid_before  # type: ignore[attr-defined]
    xml = dom.XMLDesc(0)  # type: ignore[attr-defined]
    assert str(rebuilt.image.id) in xml
    started = dom.ID()  # type: ignore[attr-defined]
    await driver.rebuild(rebuilt, "pw2", action_id=action)  # redelivered: nothing happens
    assert _dom(driver, instance).ID() == started  # type: ignore[attr-defined]


# --- createImage -----------------------------------------------------------------------------


async def test_snapshot_writes_the_image_once_and_leaves_no_snapshot_behind(
    driver: LibvirtDriver, tmp_path: Path
) -> None:
    instance = _instance()
    await driver.spawn(instance, "pw")
    image_id = uuid.uuid4()
    dest = tmp_path / "images" / f"{image_id}.qcow2"
    assert await driver.snapshot(instance.domain_name, image_id, dest) == 0  # no real disks
    assert dest.is_file()
    assert _dom(driver, instance).snapshotListNames() == []  # type: ignore[attr-defined]
    assert list(dest.parent.iterdir()) == [dest]
    assert await driver.snapshot(instance.domain_name, image_id, dest) == 0
    assert await driver.power_state(instance.domain_name) == PowerState.RUNNING
    with pytest.raises(DriverError):
        await driver.snapshot("instance-nobody", uuid.uuid4(), tmp_path / "images" / "x")


async def test_a_snapshot_of_real_disks_that_cannot_be_taken_fails_cleanly(
    driver: LibvirtDriver, tmp_path: Path
) -> None:
    """The real-disk path, run on the test hypervisor, which has no disks: a running guest's
    disk cannot be frozen (no external snapshots), a stopped one's cannot be read (no
    file); either way it fails, and leaves neither an image file nor a snapshot."""
    from compute_agent.virt.libvirt import snapshots

    instance = _instance()
    await driver.spawn(instance, "pw")
    dom = _dom(driver, instance)
    dest = tmp_path / "images" / "img.qcow2"
    disk = tmp_path / "no-such-disk"
    with pytest.raises(libvirt.libvirtError):
        snapshots.write_image(dom, uuid.uuid4(), dest, disk=disk)
    dom.destroy()  # type: ignore[attr-defined]
    with pytest.raises(DriverError, match="qemu-img"):
        snapshots.write_image(dom, uuid.uuid4(), dest, disk=disk)
    assert not dest.parent.exists() or list(dest.parent.iterdir()) == []
    assert dom.snapshotListNames() == []  # type: ignore[attr-defined]


# --- resize on one host ----------------------------------------------------------------------


async def test_resize_on_one_host_redefines_the_domain_and_revert_restores_it(
    driver: LibvirtDriver,
) -> None:
    old = _instance(TINY)
    new = old.model_copy(update={"flavor": SMALL})
    await driver.spawn(old, "pw")

    assert await driver.migrate_disk_and_power_off(old, "a") == PowerState.SHUTDOWN
    assert await driver.finish_migration(new, same_host=True) == PowerState.RUNNING
    info = _dom(driver, old).info()  # type: ignore[attr-defined]
    assert (info[1], info[3]) == (2048 * 1024, 2)
    started = _dom(driver, old).ID()  # type: ignore[attr-defined]
    assert await driver.finish_migration(new, same_host=True) == PowerState.RUNNING
    assert _dom(driver, old).ID() == started  # type: ignore[attr-defined]

    assert await driver.finish_revert_migration(old) == PowerState.RUNNING
    info = _dom(driver, old).info()  # type: ignore[attr-defined]
    assert (info[1], info[3]) == (512 * 1024, 1)

    await driver.confirm_migration(old.domain_name, same_host=True)  # nothing to discard
    assert old.domain_name in await driver.list_instances()


async def test_a_failed_finish_on_the_same_host_keeps_the_original_for_the_rollback(
    driver: LibvirtDriver,
) -> None:
    old = _instance(TINY)
    await driver.spawn(old, "pw")
    await driver.migrate_disk_and_power_off(old, "a")
    with pytest.raises(DriverError):
        await driver.finish_migration(old.model_copy(update={"flavor": BROKEN}), same_host=True)
    assert old.domain_name in await driver.list_instances()
    assert await driver.finish_revert_migration(old) == PowerState.RUNNING


async def test_powering_off_twice_is_fine(driver: LibvirtDriver) -> None:
    instance = _instance()
    await driver.spawn(instance, "pw")
    await driver.migrate_disk_and_power_off(instance, "b")
    assert await driver.migrate_disk_and_power_off(instance, "b") == PowerState.SHUTDOWN
    with pytest.raises(DriverError):
        await driver.migrate_disk_and_power_off(_instance(), "b")


# --- resize between two hosts ----------------------------------------------------------------


async def test_resize_to_another_host_then_confirm(tmp_path: Path) -> None:
    source, dest = await _host(tmp_path, "a"), await _host(tmp_path, "b")
    old = _instance(TINY)
    new = old.model_copy(update={"flavor": SMALL})
    await source.spawn(old, "pw")
    await source.migrate_disk_and_power_off(old, "b")
    assert await dest.finish_migration(new, same_host=False) == PowerState.RUNNING
    assert await source.power_state(old.domain_name) == PowerState.SHUTDOWN
    await source.confirm_migration(old.domain_name, same_host=False)
    assert old.domain_name not in await source.list_instances()
    await source.confirm_migration(old.domain_name, same_host=False)  # twice is fine
    assert await dest.power_state(old.domain_name) == PowerState.RUNNING


async def test_resize_to_another_host_then_revert(tmp_path: Path) -> None:
    source, dest = await _host(tmp_path, "a"), await _host(tmp_path, "b")
    old = _instance(TINY)
    await source.spawn(old, "pw")
    await source.migrate_disk_and_power_off(old, "b")
    await dest.finish_migration(old.model_copy(update={"flavor": SMALL}), same_host=False)
    await dest.destroy(old.domain_name)
    assert await source.finish_revert_migration(old) == PowerState.RUNNING
    assert old.domain_name not in await dest.list_instances()
    info = source._conn.lookupByName(old.domain_name).info()
    assert info[1] == 512 * 1024


async def test_a_failed_finish_on_another_host_leaves_nothing_there(tmp_path: Path) -> None:
    dest = await _host(tmp_path, "b")
    broken = _instance(BROKEN)
    with pytest.raises(DriverError):
        await dest.finish_migration(broken, same_host=False)
    assert broken.domain_name not in await dest.list_instances()


# --- domain documents ------------------------------------------------------------------------


def test_the_flavor_and_disks_of_a_domain_document_are_read_back(tmp_path: Path) -> None:
    xml = domain_xml.build(_instance(SMALL), domain_type="test", disk_path=tmp_path / "disk")
    assert domain_xml.flavor_id(xml) == "2"
    assert domain_xml.disk_paths(xml) == [tmp_path / "disk"]
    assert domain_xml.flavor_id("<domain><name>other</name></domain>") is None
