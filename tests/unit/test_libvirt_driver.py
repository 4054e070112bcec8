"""The libvirt driver on libvirt's built-in test hypervisor (test:///default)."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from compute_agent.virt.libvirt import domain_xml
from shared.messages import FlavorSpec, ImageSpec, InstanceSpec
from shared.states import PowerState
from tests.support.missing import LIBVIRT_BINDING

libvirt = pytest.importorskip("libvirt", reason=LIBVIRT_BINDING)

from compute_agent.virt.libvirt.driver import LibvirtDriver  # noqa: E402


def _instance(name: str = "web") -> InstanceSpec:
    return InstanceSpec(
        server_id=uuid.uuid4(),
        name=name,
        flavor=FlavorSpec(id="2", name="m1.small", vcpus=2, ram_mb=2048, disk_gb=20),
        image=ImageSpec(id=uuid.uuid4(), name="cirros"),
    )


def test_domain_xml_carries_the_flavor_and_the_server_identity(tmp_path: Path) -> None:
    instance = _instance("web & <db>")
    root = ET.fromstring(
        domain_xml.build(instance, domain_type="qemu", disk_path=tmp_path / "disk")
    )
    assert root.get("type") == "qemu"
    assert root.findtext("name") == instance.domain_name
    assert root.findtext("uuid") == str(instance.server_id)
    assert root.findtext("memory") == "2048"
    assert root.find("memory").get("unit") == "MiB"  # type: ignore[union-attr]
    assert root.findtext("vcpu") == "2"
    assert root.find("devices/disk/source").get("file") == str(tmp_path / "disk")  # type: ignore[union-attr]
    ns = {"s": domain_xml.METADATA_NS}
    assert root.findtext("metadata/s:instance/s:name", namespaces=ns) == "web & <db>"


@pytest.fixture
async def driver(tmp_path: Path) -> LibvirtDriver:
    the_driver = LibvirtDriver("test:///default", tmp_path / "instances")
    await the_driver.init_host("test-host")
    return the_driver


async def test_spawn_defines_and_starts_a_domain_and_destroy_removes_it(
    driver: LibvirtDriver,
) -> None:
    instance = _instance()
    assert await driver.spawn(instance, "pw") == PowerState.RUNNING
    assert instance.domain_name in await driver.list_instances()
    assert await driver.power_state(instance.domain_name) == PowerState.RUNNING

    await driver.destroy(instance.domain_name)
    assert instance.domain_name not in await driver.list_instances()
    assert await driver.power_state(instance.domain_name) == PowerState.NOSTATE


async def test_spawn_and_destroy_are_idempotent(driver: LibvirtDriver) -> None:
    instance = _instance()
    await driver.spawn(instance, "pw")
    assert await driver.spawn(instance, "pw") == PowerState.RUNNING
    await driver.destroy(instance.domain_name)
    await driver.destroy(instance.domain_name)
    assert instance.domain_name not in await driver.list_instances()


async def test_the_test_hypervisor_reports_capacity_and_overrides_win(tmp_path: Path) -> None:
    plain = LibvirtDriver("test:///default", tmp_path)
    await plain.init_host("h")
    capacity = await plain.capacity()
    assert capacity.hypervisor_type == "test"
    assert capacity.vcpus > 0 and capacity.ram_mb > 0 and capacity.disk_gb > 0
    sized = LibvirtDriver("test:///default", tmp_path, vcpus=7, ram_mb=1000, disk_gb=9)
    await sized.init_host("h")
    assert (await sized.capacity()).model_dump(include={"vcpus", "ram_mb", "disk_gb"}) == {
        "vcpus": 7,
        "ram_mb": 1000,
        "disk_gb": 9,
    }


async def test_only_our_domains_are_listed(driver: LibvirtDriver) -> None:
    # test:///default always has a domain called "test"; it is not ours
    assert "test" not in await driver.list_instances()
