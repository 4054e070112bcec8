"""Live migration in the virt drivers: two hosts in one process hand a running server over.

The fake hypervisor moves a server itself, as a real one does (no handover); libvirt's test
hypervisor cannot migrate, so its source hands the definition over and the destination
defines and starts it. Each host of the libvirt tests is a hypervisor of its own
(``test:///<node file>``): a connection to another host's URI sees none of its domains.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from compute_agent.virt.driver import DriverError
from compute_agent.virt.fake import FakeDriver
from compute_agent.virt.libvirt import mock_nodes
from shared.messages import FlavorSpec, ImageSpec, InstanceSpec
from shared.states import PowerState
from tests.support.missing import LIBVIRT_BINDING, QEMU_UTILS

TINY = FlavorSpec(id="1", name="m1.tiny", vcpus=1, ram_mb=512, disk_gb=1)
HUGE = FlavorSpec(id="5", name="m1.xlarge", vcpus=8, ram_mb=16384, disk_gb=160)


def _instance(flavor: FlavorSpec = TINY) -> InstanceSpec:
    return InstanceSpec(
        server_id=uuid.uuid4(),
        name="web",
        flavor=flavor,
        image=ImageSpec(id=uuid.uuid4(), name="cirros"),
    )


# --- the fake hypervisor ---------------------------------------------------------------------


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeDriver, FakeDriver]]:
    source, dest = FakeDriver(), FakeDriver(vcpus=4, ram_mb=1024)
    await source.init_host("fake-src")
    await dest.init_host("fake-dst")
    yield source, dest
    await source.close()
    await dest.close()


async def _fake_uri(driver: FakeDriver) -> str:
    return (await driver.capacity()).hypervisor_uri


async def test_a_fake_host_moves_a_running_server_to_another(
    fakes: tuple[FakeDriver, FakeDriver],
) -> None:
    source, dest = fakes
    instance = _instance()
    await source.spawn(instance, "pw")
    name = instance.domain_name
    uri = await _fake_uri(dest)
    assert uri == "fake://fake-dst"

    await dest.prepare_live_migration(instance, block_migration=False)
    assert await source.live_migrate(instance, "fake-dst", uri, block_migration=False) is None
    assert name not in source.domains
    assert dest.domains[name].power is PowerState.RUNNING
    assert await dest.finish_live_migration(instance, handover=None) is PowerState.RUNNING
    await source.clean_up_live_migration(instance, block_migration=False)
    assert dest.arriving == set()
    # every step again changes nothing (a repeated prepare is refused, harmlessly)
    with pytest.raises(DriverError, match="on this host already"):
        await dest.prepare_live_migration(instance, block_migration=False)
    assert await source.live_migrate(instance, "fake-dst", uri, block_migration=False) is None
    assert await dest.finish_live_migration(instance, handover=None) is PowerState.RUNNING
    await source.clean_up_live_migration(instance, block_migration=False)
    assert dest.domains[name].boots == 1  # it never restarted


async def test_a_fake_host_refuses_what_it_cannot_do(
    fakes: tuple[FakeDriver, FakeDriver],
) -> None:
    source, dest = fakes
    instance = _instance()
    await source.spawn(instance, "pw")
    uri = await _fake_uri(dest)
    with pytest.raises(DriverError, match="has not prepared"):
        await source.live_migrate(instance, "fake-dst", uri, block_migration=False)
    with pytest.raises(DriverError, match="cannot reach"):
        await source.live_migrate(instance, "nowhere", "fake://nowhere", block_migration=False)
    with pytest.raises(DriverError, match="on this host already"):
        await source.prepare_live_migration(instance, block_migration=False)
    with pytest.raises(DriverError, match="does not run"):
        await dest.finish_live_migration(instance, handover=None)
    assert source.domains[instance.domain_name].power is PowerState.RUNNING


async def test_after_a_failed_fake_migration_the_source_runs_and_the_destination_forgets(
    fakes: tuple[FakeDriver, FakeDriver],
) -> None:
    source, dest = fakes
    instance = _instance()
    await source.spawn(instance, "pw")
    await dest.prepare_live_migration(instance, block_migration=True)
    source.fail_next("live_migrate", "connection reset")
    with pytest.raises(DriverError, match="connection reset"):
        await source.live_migrate(instance, "fake-dst", await _fake_uri(dest), block_migration=True)
    assert await source.recover_live_migration(instance) is PowerState.RUNNING
    await dest.roll_back_live_migration(instance, block_migration=True)
    await dest.roll_back_live_migration(instance, block_migration=True)
    assert dest.arriving == set() and not dest.domains
    with pytest.raises(DriverError, match="is not on host"):
        await dest.recover_live_migration(instance)


async def test_a_fake_host_initialised_again_takes_its_uri_over() -> None:
    first, second = FakeDriver(), FakeDriver()
    await first.init_host("fake-again")
    await second.init_host("fake-again")
    await first.close()  # the old one leaving does not unregister the new one
    source = FakeDriver()
    await source.init_host("fake-from")
    instance = _instance()
    await source.spawn(instance, "pw")
    await second.prepare_live_migration(instance, block_migration=False)
    await source.live_migrate(instance, "fake-again", "fake://fake-again", block_migration=False)
    assert instance.domain_name in second.domains
    await second.close()
    await source.close()


# --- libvirt's test hypervisor ---------------------------------------------------------------

libvirt = pytest.importorskip("libvirt", reason=LIBVIRT_BINDING)

from compute_agent.virt.libvirt import migration  # noqa: E402
from compute_agent.virt.libvirt.driver import LibvirtDriver  # noqa: E402


async def _host(tmp_path: Path, name: str) -> LibvirtDriver:
    driver = LibvirtDriver(mock_nodes.node_uri(tmp_path / "nodes", name), tmp_path / name)
    await driver.init_host(name)
    return driver


@pytest.fixture
async def hosts(tmp_path: Path) -> AsyncIterator[tuple[LibvirtDriver, LibvirtDriver]]:
    source, dest = await _host(tmp_path, "src"), await _host(tmp_path, "dst")
    yield source, dest
    await source.close()
    await dest.close()


async def test_the_test_hypervisor_hands_the_domain_over(
    hosts: tuple[LibvirtDriver, LibvirtDriver],
) -> None:
    source, dest = hosts
    instance = _instance()
    await source.spawn(instance, "pw")
    name = instance.domain_name
    assert name not in await dest.list_instances()  # hypervisors of their own

    await dest.prepare_live_migration(instance, block_migration=False)
    handover = await source.live_migrate(instance, "dst", dest.uri, block_migration=False)
    assert handover is not None and f"<name>{name}</name>" in handover
    # the original runs until the clean-up, as a hypervisor keeps it until the switch-over
    assert await source.power_state(name) is PowerState.RUNNING
    assert await dest.finish_live_migration(instance, handover=handover) is PowerState.RUNNING
    assert await dest.finish_live_migration(instance, handover=handover) is PowerState.RUNNING
    await source.clean_up_live_migration(instance, block_migration=False)
    await source.clean_up_live_migration(instance, block_migration=False)

    assert name not in await source.list_instances()
    assert await dest.list_instances() == [name]
    moved = dest._conn.lookupByName(name)
    assert moved.UUIDString() == str(instance.server_id)
    assert migration.disk_targets(moved.XMLDesc(0)) == ["vda"]
    assert "stratus" in moved.XMLDesc(0)  # its Stratus metadata came along


async def test_a_destination_that_does_not_answer_fails_the_migration_and_nothing_moves(
    hosts: tuple[LibvirtDriver, LibvirtDriver], tmp_path: Path
) -> None:
    source, dest = hosts
    instance = _instance()
    await source.spawn(instance, "pw")
    await dest.prepare_live_migration(instance, block_migration=True)
    (tmp_path / "nodes" / "dst.xml").unlink()  # the destination's hypervisor is gone
    with pytest.raises(DriverError, match="cannot reach the destination"):
        await source.live_migrate(instance, "dst", dest.uri, block_migration=True)
    assert await source.recover_live_migration(instance) is PowerState.RUNNING
    await dest.roll_back_live_migration(instance, block_migration=True)
    assert await source.list_instances() == [instance.domain_name]
    assert await dest.list_instances() == []


async def test_recovering_starts_a_stopped_or_paused_original(
    hosts: tuple[LibvirtDriver, LibvirtDriver],
) -> None:
    source, _ = hosts
    instance = _instance()
    await source.spawn(instance, "pw")
    dom = source._conn.lookupByName(instance.domain_name)
    dom.suspend()  # libvirt's word for paused
    assert await source.recover_live_migration(instance) is PowerState.RUNNING
    dom.destroy()
    assert await source.recover_live_migration(instance) is PowerState.RUNNING
    await source.destroy(instance.domain_name)
    with pytest.raises(DriverError, match="is not on host"):
        await source.recover_live_migration(instance)


async def test_the_destination_refuses_a_server_it_has_or_cannot_hold(
    hosts: tuple[LibvirtDriver, LibvirtDriver],
) -> None:
    source, dest = hosts
    instance = _instance()
    await source.spawn(instance, "pw")
    with pytest.raises(DriverError, match="on this host already"):
        await source.prepare_live_migration(instance, block_migration=False)
    with pytest.raises(DriverError, match="too small"):
        await dest.prepare_live_migration(_instance(HUGE), block_migration=False)
    # the test hypervisor receives only what is handed over
    with pytest.raises(DriverError, match="handed over"):
        await dest.finish_live_migration(instance, handover=None)


async def test_a_server_that_has_left_is_not_migrated_again(
    hosts: tuple[LibvirtDriver, LibvirtDriver],
) -> None:
    source, dest = hosts
    assert await source.live_migrate(_instance(), "dst", dest.uri, block_migration=False) is None


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason=QEMU_UTILS)
async def test_a_destination_removes_only_the_disk_it_made_for_an_arrival(tmp_path: Path) -> None:
    """On a real host the destination of a block migration makes the server's disk (an empty
    overlay on its image, marked as arriving) and a rollback removes it; nothing else is
    ever removed. A disk that is there already (an instances directory shared with the
    source) is refused to a block migration, not taken over; a migration without one needs
    that shared disk, and is refused without it."""
    store = tmp_path / "store"
    store.mkdir()
    base = ["qemu-img", "create", "-q", "-f", "qcow2", str(store / "base.qcow2"), "64M"]
    await asyncio.to_thread(subprocess.run, base, check=True)
    node = mock_nodes.node_uri(tmp_path / "nodes", "real")
    real = LibvirtDriver(node, tmp_path / "instances", image_store=store)
    await real.init_host("real")
    real.uri = "qemu:///system"  # what the driver believes; its connection stays the test one
    try:
        instance = _instance().model_copy(
            update={"image": ImageSpec(id=uuid.uuid4(), name="base", location="base.qcow2")}
        )
        disk_dir = tmp_path / "instances" / str(instance.server_id)
        with pytest.raises(DriverError, match="migrate with block_migration"):
            await real.prepare_live_migration(instance, block_migration=False)
        assert not disk_dir.exists()  # no shared storage: refused, nothing made

        await real.prepare_live_migration(instance, block_migration=True)
        assert (disk_dir / "disk").is_file()
        await real.roll_back_live_migration(instance, block_migration=True)
        assert not disk_dir.exists()

        disk_dir.mkdir()
        (disk_dir / "disk").write_bytes(b"the source's disk, on shared storage")
        with pytest.raises(DriverError, match="shared with the source"):
            await real.prepare_live_migration(instance, block_migration=True)
        await real.prepare_live_migration(instance, block_migration=False)  # shared: fine
        await real.roll_back_live_migration(instance, block_migration=False)
        await real.roll_back_live_migration(instance, block_migration=True)
        assert (disk_dir / "disk").read_bytes() == b"the source's disk, on shared storage"
    finally:
        await real.close()


# --- the flags and where the source goes -----------------------------------------------------


def test_flags_are_live_persistent_and_undefine_the_source() -> None:
    base = (
        libvirt.VIR_MIGRATE_LIVE
        | libvirt.VIR_MIGRATE_PERSIST_DEST
        | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
    )
    assert migration.migration_flags(p2p=False, block_migration=False) == base
    assert (
        migration.migration_flags(p2p=True, block_migration=True)
        == base | libvirt.VIR_MIGRATE_PEER2PEER | libvirt.VIR_MIGRATE_NON_SHARED_INC
    )


def test_a_block_migration_names_the_disks_to_copy() -> None:
    xml = (
        "<domain><devices>"
        "<disk device='disk'><target dev='vda'/></disk>"
        "<disk device='cdrom'><target dev='hdc'/></disk>"
        "<disk device='disk'><target dev='vdb'/></disk>"
        "</devices></domain>"
    )
    assert migration.migration_params(xml, block_migration=False) == {}
    assert migration.migration_params(xml, block_migration=True) == {
        libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS: ["vda", "vdb"]
    }


@pytest.mark.parametrize(
    ("uri", "host", "expected"),
    [
        ("qemu:///system", "compute-2", "qemu+tcp://compute-2/system"),
        ("qemu+ssh:///system", "compute-2", "qemu+ssh://compute-2/system"),
        ("qemu+tls://c2.example.com/system", "compute-2", "qemu+tls://c2.example.com/system"),
        (
            "test:///var/lib/stratus/hypervisors/h2.xml",
            "h2",
            "test:///var/lib/stratus/hypervisors/h2.xml",
        ),
    ],
)
def test_the_source_reaches_the_destination_remotely(uri: str, host: str, expected: str) -> None:
    assert migration.peer_uri(uri, host) == expected


class _MigratableDomain:
    """Stands in for a libvirt domain on a hypervisor that can migrate (the test one cannot):
    it records how it was asked to."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any], int]] = []

    def migrateToURI3(self, uri: str, params: dict[str, Any], flags: int) -> None:
        self.calls.append(("migrateToURI3", uri, params, flags))

    def migrate3(self, dconn: Any, params: dict[str, Any], flags: int) -> None:
        self.calls.append(("migrate3", dconn.getURI(), params, flags))


def test_a_real_hypervisor_is_asked_to_migrate_peer_to_peer_or_directly(tmp_path: Path) -> None:
    dest_uri = mock_nodes.node_uri(tmp_path, "dst")  # a destination that answers
    transfer = migration.transfer_for("qemu:///system")
    params = {libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS: ["vda"]}
    p2p = migration.migration_flags(p2p=True, block_migration=True)
    direct = migration.migration_flags(p2p=False, block_migration=True)
    dom = _MigratableDomain()
    assert transfer.send(dom, dest_uri, params, p2p) is None
    assert transfer.send(dom, dest_uri, params, direct) is None
    assert dom.calls == [
        ("migrateToURI3", dest_uri, params, p2p),
        ("migrate3", dest_uri, params, direct),  # the agent opened the destination itself
    ]
    transfer.receive(object(), _instance(), None)  # the hypervisor brought it: nothing to do


async def test_a_handover_defines_nothing_but_the_server(
    hosts: tuple[LibvirtDriver, LibvirtDriver],
) -> None:
    source, dest = hosts
    instance, other = _instance(), _instance()
    await source.spawn(instance, "pw")
    handover = await source.live_migrate(instance, "dst", dest.uri, block_migration=False)
    assert handover is not None
    for wrong in (handover, "<domain><name>x"):
        with pytest.raises(DriverError, match="handed-over definition"):
            await dest.finish_live_migration(other, handover=wrong)
    assert await dest.list_instances() == []
