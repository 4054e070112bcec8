"""What a guest prints on its serial console when the hypervisor runs no real one.

The fake hypervisor (fake.py) keeps its guests in memory, and libvirt's test hypervisor starts
none: neither has a guest that prints anything. So that a server's console log (nova's
os-console-output) reads the same as on a real host, their drivers log, at every start of a
guest (a spawn, a reboot, a start, a rebuild, a resize's or a cold migration's restart), the
lines ``boot_lines`` returns: what the Stratus test guest prints when it boots on a real
hypervisor (deploy/guest/README.md, "What the guest prints on its console"), ending with its
login prompt (the manifest's ``login_prompt``, deploy/guest/build.sh). A resume or a live
migration is no boot, and prints nothing.

The boot is a sequence of parts (``BOOT``), each a function of the server's ``InstanceSpec``
that returns its lines. For the guest to print more at boot (what its config drive
delivered, say), write such a function and add it to ``BOOT`` before ``_login``: both drivers
call ``boot_lines`` and nothing else, so they print it at once.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable

from shared.messages import InstanceSpec

#: the guest's host name (deploy/guest/rootfs/etc/hostname), which starts its own lines
HOSTNAME = "stratus-guest"
#: what busybox's getty prints last, and waits at (the manifest's ``login_prompt``)
LOGIN_PROMPT = f"{HOSTNAME} login:"
#: what getty prints before the prompt (deploy/guest/rootfs/etc/issue)
ISSUE = "Stratus guest (root, no password until changePassword sets one)"

#: one part of a boot: the lines it prints, from the server's spec
BootPart = Callable[[InstanceSpec], list[str]]

_SECTOR = 512
_GIB = 1024**3


def _kernel(instance: InstanceSpec) -> list[str]:
    """The boot loader's start of the image (the test guest's kernel is ``quiet``)."""
    vcpus = instance.flavor.vcpus
    unit = "vCPU" if vcpus == 1 else "vCPUs"
    return [f"{HOSTNAME}: booting {instance.image.name} on {vcpus} {unit}"]


def _system(instance: InstanceSpec) -> list[str]:
    """rcS's status line (deploy/guest/rootfs/etc/init.d/rcS): the memory and root disk the
    flavor gives, so a resize shows on the console as it does in the real guest."""
    memory_kb = instance.flavor.ram_mb * 1024
    sectors = instance.flavor.disk_gb * _GIB // _SECTOR
    return [f"{HOSTNAME}: up=0.00 mem={memory_kb}kB disk={sectors}s"]


#: the files of the test guest's own (deploy/guest/rootfs/): a personality file on one of these
#: paths replaces it, and the guest keeps the old one as ``<path>.bak.<time>``
GUEST_FILES = frozenset(
    {
        "/etc/acpi/PWRF/00000080",
        "/etc/group",
        "/etc/hostname",
        "/etc/init.d/rcK",
        "/etc/init.d/rcS",
        "/etc/inittab",
        "/etc/issue",
        "/etc/modules",
        "/etc/passwd",
        "/etc/profile",
        "/etc/shadow",
        "/init",
        "/usr/sbin/stratus-config-drive",
        "/usr/sbin/stratus-qga",
    }
)
#: the device the guest finds its config drive on (the first CD-ROM)
DRIVE_DEVICE = "/dev/sr0"


def _config_drive(instance: InstanceSpec) -> list[str]:
    """What the guest's stratus-config-drive prints (deploy/guest/README.md, "The config
    drive"): the drive found, each personality file written (root:root, 0440; one of the
    guest's own files kept aside first), each key in authorized_keys. The fake guest runs no
    user data: it says so, where the real one prints the script's output."""
    say = f"{HOSTNAME}: config-drive:"
    if not instance.has_config_drive:
        return [f"{say} none"]
    lines = [f"{say} found {DRIVE_DEVICE}"]
    now = int(time.time())
    for injected in instance.guest.files:
        if injected.path in GUEST_FILES:
            lines.append(f"{say} backup {injected.path}.bak.{now}")
        lines.append(f"{say} file {injected.path} 440 root:root")
    if instance.guest.key_data:  # a line of authorized_keys, read back
        lines.append(f"{say} authorized_keys {instance.guest.key_data.strip()}")
    if instance.guest.user_data is not None:
        script = base64.b64decode("".join(instance.guest.user_data.split()))
        ran = "not run by the fake guest" if script.startswith(b"#!") else "not a script"
        lines.append(f"{say} user-data {ran}")
    lines.append(f"{say} done")
    return lines


def _login(instance: InstanceSpec) -> list[str]:
    """getty on the serial console: the issue, then the prompt it waits at."""
    return [ISSUE, LOGIN_PROMPT]


#: what a guest prints at each boot, in order; the login prompt comes last
BOOT: tuple[BootPart, ...] = (_kernel, _config_drive, _system, _login)


def boot_lines(instance: InstanceSpec) -> list[str]:
    """The lines the guest of ``instance`` prints on its serial console at each boot, without
    line ends; the last is ``LOGIN_PROMPT``."""
    return [line for part in BOOT for line in part(instance)]
