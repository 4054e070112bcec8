"""What the libvirt driver asks of QEMU, read without a hypervisor or the libvirt binding: the
domain document of a server, its files moved to another host's directory, when KVM is usable.
(What needs the binding is in test_libvirt_qemu_binding.py.)"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

from compute_agent.virt.libvirt import domain_xml, virt_type
from compute_agent.virt.libvirt.images import BootFiles
from shared.messages import FlavorSpec, ImageSpec, InstanceSpec

SMALL = FlavorSpec(id="2", name="m1.small", vcpus=2, ram_mb=2048, disk_gb=20)


def an_instance() -> InstanceSpec:
    return InstanceSpec(
        server_id=uuid.uuid4(),
        name="web",
        flavor=SMALL,
        image=ImageSpec(id=uuid.uuid4(), name="guest", location="guest.qcow2"),
    )


# --- the domain document ---------------------------------------------------------------------


def test_a_qemu_domain_has_what_a_cloud_server_needs(tmp_path: Path) -> None:
    instance = an_instance()
    root = ET.fromstring(
        domain_xml.build(
            instance,
            domain_type="qemu",
            disk_path=tmp_path / "disk",
            console_log=tmp_path / "console.log",
            cache="writeback",
        )
    )
    assert (root.get("type"), root.findtext("vcpu"), root.findtext("memory")) == (
        "qemu",
        "2",
        "2048",
    )
    assert root.find("features/acpi") is not None
    assert root.findtext("on_reboot") == "restart"
    assert root.find("os/boot").get("dev") == "hd"  # type: ignore[union-attr]
    assert root.find("os/kernel") is None
    disk = root.find("devices/disk")
    assert disk is not None
    assert disk.find("target").get("bus") == "virtio"  # type: ignore[union-attr]
    assert disk.find("driver").attrib == {  # type: ignore[union-attr]
        "name": "qemu",
        "type": "qcow2",
        "cache": "writeback",
    }
    nic = root.find("devices/interface")
    assert nic is not None and nic.get("type") == "user"
    assert nic.find("model").get("type") == "virtio"  # type: ignore[union-attr]
    serial = root.find("devices/serial")
    assert serial is not None and serial.get("type") == "pty"
    assert serial.find("log").get("file") == str(tmp_path / "console.log")  # type: ignore[union-attr]
    channel = root.find("devices/channel/target")
    assert channel is not None and channel.get("name") == "org.qemu.guest_agent.0"


def test_a_domain_on_a_libvirt_network_and_booted_from_a_kernel(tmp_path: Path) -> None:
    instance = an_instance()
    boot = BootFiles(kernel=tmp_path / "vmlinuz", initrd=tmp_path / "initrd.img", cmdline="quiet")
    root = ET.fromstring(
        domain_xml.build(
            instance, domain_type="kvm", disk_path=tmp_path / "disk", boot=boot, network="tenants"
        )
    )
    assert root.find("os/boot") is None
    assert (
        root.findtext("os/kernel"),
        root.findtext("os/initrd"),
        root.findtext("os/cmdline"),
    ) == (
        str(tmp_path / "vmlinuz"),
        str(tmp_path / "initrd.img"),
        "quiet",
    )
    nic = root.find("devices/interface")
    assert nic is not None and nic.get("type") == "network"
    assert nic.find("source").get("network") == "tenants"  # type: ignore[union-attr]


def test_a_server_keeps_its_mac_address_through_every_definition() -> None:
    server = uuid.uuid4()
    address = domain_xml.mac_address(server)
    assert address == domain_xml.mac_address(server)
    assert address.startswith("52:54:00:") and len(address.split(":")) == 6
    xml = domain_xml.build(an_instance(), domain_type="qemu", disk_path=Path("/d"))
    assert ET.fromstring(xml).find("devices/interface/mac") is not None


def test_relocating_moves_only_the_files_under_the_directory() -> None:
    xml = """<domain><devices>
      <disk><source file='/a/inst/42/disk'/><backingStore><source file='/store/base.qcow2'/>
        </backingStore></disk>
      <serial><log file='/a/inst/42/console.log'/></serial>
      <channel><source path='/var/lib/libvirt/qemu/channel'/></channel>
      <disk><source file='/a/inst/420/disk'/></disk>
    </devices></domain>"""
    moved = ET.fromstring(domain_xml.relocate(xml, Path("/a/inst/42"), Path("/b/inst/42")))
    assert [s.get("file") for s in moved.iter("source") if s.get("file")] == [
        "/b/inst/42/disk",
        "/store/base.qcow2",
        "/a/inst/420/disk",
    ]
    assert moved.find("devices/serial/log").get("file") == "/b/inst/42/console.log"  # type: ignore[union-attr]
    assert moved.find("devices/channel/source").get("path") == "/var/lib/libvirt/qemu/channel"  # type: ignore[union-attr]


def test_a_definition_left_on_a_temporary_overlay_names_the_disk_again() -> None:
    """After an interrupted snapshot of a guest that then stopped: the overlay's writes are
    committed into the disk, and the definition names the disk, without the recorded chain
    (overlay -> disk) that would now make the disk its own backing file."""
    xml = """<domain><devices><disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/><source file='/i/42/disk.snap-1'/>
      <backingStore type='file'><format type='qcow2'/><source file='/i/42/disk'/>
      </backingStore><target dev='vda' bus='virtio'/></disk></devices></domain>"""
    disk = ET.fromstring(domain_xml.with_root_disk(xml, Path("/i/42/disk"))).find("devices/disk")
    assert disk is not None
    assert disk.find("source").get("file") == "/i/42/disk"  # type: ignore[union-attr]
    assert disk.find("backingStore") is None
    assert disk.find("target").get("dev") == "vda"  # type: ignore[union-attr]


def test_a_guest_agent_answers_only_when_its_channel_is_connected() -> None:
    def live(state: str) -> str:
        return (
            "<domain><devices><channel type='unix'><target type='virtio' "
            f"name='org.qemu.guest_agent.0' {state}/></channel></devices></domain>"
        )

    assert domain_xml.agent_connected(live("state='connected'"))
    assert not domain_xml.agent_connected(live("state='disconnected'"))
    assert not domain_xml.agent_connected(live(""))
    assert not domain_xml.agent_connected("<domain><devices/></domain>")


# --- KVM or emulation ------------------------------------------------------------------------


def capabilities(qemu64: str) -> str:
    return f"""<domainCapabilities><domain>kvm</domain><cpu>
      <mode name='host-model' supported='yes'><model fallback='forbid'>kvm64</model></mode>
      <mode name='custom' supported='yes'>
        <model usable='{qemu64}' vendor='unknown'>qemu64</model>
        <model usable='yes' vendor='unknown'>pentium</model>
      </mode></cpu></domainCapabilities>"""


def test_kvm_is_used_only_where_it_runs_qemus_default_cpu() -> None:
    assert virt_type.kvm_usable(capabilities("yes"))
    # measured: /dev/kvm opens, libvirt offers kvm, guests hang in their boot
    assert not virt_type.kvm_usable(capabilities("no"))
    assert virt_type.kvm_usable("<domainCapabilities><domain>kvm</domain></domainCapabilities>")
