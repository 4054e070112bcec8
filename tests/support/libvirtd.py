"""Real libvirt daemons for tests: each one a "hypervisor host" of its own on this machine.

One machine plays several compute hosts. Each host is a ``virtlogd`` and a ``libvirtd`` in a
mount and UTS namespace of their own (``unshare -m -u``): private directories are bind-mounted
over ``/run/libvirt``, ``/var/lib/libvirt``, ``/etc/libvirt``, ``/var/log/libvirt`` and
``/var/cache/libvirt``, so the daemons share no socket, state, configuration or domain with
each other, nor with a libvirtd the machine runs itself. Each listens on a TCP port of the
loopback address of its own, without authentication, has a ``host_uuid`` of its own (libvirt
refuses to migrate a guest to "the same host"). Agents reach it at
``qemu+tcp://127.0.0.1:<port>/system``. libvirt refuses loopback as a host's
``migration_address``/``migration_host``, so a live migration between these hosts must name
loopback itself (the migrate URI ``tcp://127.0.0.1`` and the listen address ``127.0.0.1``),
as the libvirt driver does; the host names do not resolve, so nothing falls back to them.

The daemons run QEMU as root without a security driver or cgroups: the instance and image
directories of tests are private temporary directories, which the ``libvirt-qemu`` user could
not read, and two daemons on one machine must not fight over the same cgroups.

Everything is stopped by process id (the pid files the daemons write), never by name: first
the domains (a libvirtd that stops leaves its guests running), then the daemons, then any
QEMU whose pid file is still there.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

#: the directories a daemon keeps to itself, and where each goes under its root
PRIVATE_DIRS = {
    "/run/libvirt": "run",
    "/var/lib/libvirt": "lib",
    "/etc/libvirt": "etc",
    "/var/log/libvirt": "log",
    "/var/cache/libvirt": "cache",
}

#: the programs a host needs (``nsenter``: to start its libvirtd again in its namespaces)
PROGRAMS = ("libvirtd", "virtlogd", "unshare", "nsenter", "qemu-system-x86_64", "qemu-img")


class LibvirtdError(RuntimeError):
    """A daemon did not start or stop; the message carries the end of its log."""


@dataclass
class Libvirtd:
    """One host's daemons, started by ``start`` and stopped by ``stop``."""

    name: str
    root: Path
    port: int
    host_uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        """Where agents (and the other hosts' libvirtds) reach this one."""
        return f"qemu+tcp://127.0.0.1:{self.port}/system"

    def private(self, system_dir: str) -> Path:
        """Where ``system_dir`` (e.g. ``/var/lib/libvirt``) of this host really is."""
        return self.root / PRIVATE_DIRS[system_dir]

    @property
    def log_file(self) -> Path:
        return self.private("/var/log/libvirt") / "libvirtd.log"

    def qemu_pids(self, domain: str = "") -> list[int]:
        """The QEMU processes of this host's running domains (of ``domain`` only, if named),
        from libvirt's pid files."""
        pids = []
        for pid_file in (self.private("/run/libvirt") / "qemu").glob("*.pid"):
            with contextlib.suppress(ValueError, OSError):
                pids.append(int(pid_file.read_text().strip()))
        return [pid for pid in pids if _is_qemu(pid, domain)]

    def managed_save_files(self) -> list[Path]:
        """Saved memory of suspended domains (``virDomainManagedSave``), still on disk."""
        return sorted((self.private("/var/lib/libvirt") / "qemu" / "save").glob("*"))

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def missing_programs() -> list[str]:
    return [program for program in PROGRAMS if shutil.which(program) is None]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _libvirtd_conf(daemon: Libvirtd) -> str:
    return f"""# {daemon.name}: written by tests/support/libvirtd.py
listen_tls = 0
listen_tcp = 1
listen_addr = "127.0.0.1"
tcp_port = "{daemon.port}"
auth_tcp = "none"
auth_unix_rw = "none"
host_uuid = "{daemon.host_uuid}"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
"""


_QEMU_CONF = """# written by tests/support/libvirtd.py
user = "root"
group = "root"
dynamic_ownership = 0
security_driver = "none"
cgroup_controllers = [ ]
vnc_listen = "127.0.0.1"
spice_listen = "127.0.0.1"
"""


def _write_config(daemon: Libvirtd) -> None:
    for name in PRIVATE_DIRS.values():
        (daemon.root / name).mkdir(parents=True, exist_ok=True)
    etc = daemon.private("/etc/libvirt")
    (etc / "libvirtd.conf").write_text(_libvirtd_conf(daemon))
    (etc / "qemu.conf").write_text(_QEMU_CONF)
    (etc / "virtlogd.conf").write_text('log_outputs = "3:file:/var/log/libvirt/virtlogd.log"\n')


def _namespace_script(daemon: Libvirtd) -> str:
    """What runs in the new namespaces: the private mounts, the host name, the daemons
    (which fork into the background, keeping the namespaces alive)."""
    mounts = "\n".join(
        f"mkdir -p {system}\nmount --bind {daemon.root / private} {system}"
        for system, private in PRIVATE_DIRS.items()
    )
    return f"""set -e
{mounts}
hostname {daemon.name}
virtlogd -d --pid-file {daemon.root / "virtlogd.pid"}
{shlex.join(_libvirtd_command(daemon))}
"""


def _libvirtd_command(daemon: Libvirtd) -> list[str]:
    """How the host's libvirtd is started, in its namespaces (at first, and again)."""
    pid_file = daemon.root / "libvirtd.pid"
    return [
        "libvirtd",
        "-d",
        "--listen",
        "-f",
        "/etc/libvirt/libvirtd.conf",
        "--pid-file",
        str(pid_file),
    ]


def start(name: str, root: Path, *, port: int | None = None, timeout_s: float = 60.0) -> Libvirtd:
    """Start the host ``name``'s daemons with their state under ``root``; return once its
    libvirtd answers on its TCP port (the QEMU driver loaded and ready)."""
    daemon = Libvirtd(name=name, root=root.resolve(), port=port or free_port())
    _write_config(daemon)
    namespaces = ["unshare", "--mount", "--uts", "--propagation", "private"]
    launched = subprocess.run(
        [*namespaces, "sh", "-c", _namespace_script(daemon)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    _read_pids(daemon)
    if launched.returncode != 0:
        stop(daemon)
        raise LibvirtdError(f"{name}: the daemons did not start: {launched.stderr.strip()}")
    try:
        _wait_until_answering(daemon, timeout_s)
    except LibvirtdError:
        stop(daemon)
        raise
    return daemon


def _read_pids(daemon: Libvirtd) -> None:
    for program in ("virtlogd", "libvirtd"):
        pid_file = daemon.root / f"{program}.pid"
        with contextlib.suppress(OSError, ValueError):
            daemon.pids[program] = int(pid_file.read_text().strip())


def _wait_until_answering(daemon: Libvirtd, timeout_s: float) -> None:
    import libvirt

    deadline = time.monotonic() + timeout_s
    error = "no answer"
    while time.monotonic() < deadline:
        _read_pids(daemon)
        if "libvirtd" in daemon.pids and not _alive(daemon.pids["libvirtd"]):
            raise LibvirtdError(f"{daemon.name}: libvirtd exited:\n{daemon.log_tail()}")
        try:
            conn = libvirt.open(daemon.uri)
        except libvirt.libvirtError as exc:
            error = str(exc)
            time.sleep(0.2)
            continue
        try:
            conn.getCapabilities()  # the QEMU driver has probed QEMU
        finally:
            conn.close()
        return
    raise LibvirtdError(
        f"{daemon.name}: libvirtd did not answer at {daemon.uri} in {timeout_s:.0f} s "
        f"({error}):\n{daemon.log_tail()}"
    )


def kill_libvirtd(daemon: Libvirtd, *, crash: bool = True, timeout_s: float = 20.0) -> None:
    """Stop the host's libvirtd alone, as a crash does (SIGKILL) or, ``crash`` false, as a
    restart for an upgrade does (SIGTERM): its guests run on (QEMU processes of their own),
    virtlogd too, which keeps the host's namespaces. Returns once the daemon is gone."""
    pid = daemon.pids.get("libvirtd")
    if pid is None or not _alive(pid):
        raise LibvirtdError(f"{daemon.name}: libvirtd does not run")
    os.kill(pid, signal.SIGKILL if crash else signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _alive(pid):
        if time.monotonic() > deadline:
            raise LibvirtdError(f"{daemon.name}: libvirtd {pid} did not exit:\n{daemon.log_tail()}")
        time.sleep(0.05)
    # a crashed daemon leaves its pid file: the next one's must not be taken for it
    (daemon.root / "libvirtd.pid").unlink(missing_ok=True)
    daemon.pids.pop("libvirtd", None)


def start_libvirtd(daemon: Libvirtd, *, timeout_s: float = 60.0) -> None:
    """Start the host's libvirtd again (after ``kill_libvirtd``), with the same configuration,
    state and socket, in the namespaces of the host (entered through its virtlogd, which
    lives in them); returns once it answers. It finds the guests that ran on again."""
    anchor = daemon.pids.get("virtlogd")
    if anchor is None or not _alive(anchor):
        raise LibvirtdError(f"{daemon.name}: no virtlogd holds the host's namespaces")
    enter = ["nsenter", f"--target={anchor}", "--mount", "--uts"]
    launched = subprocess.run(
        [*enter, *_libvirtd_command(daemon)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if launched.returncode != 0:
        raise LibvirtdError(
            f"{daemon.name}: libvirtd did not start again: {launched.stderr.strip()}\n"
            f"{daemon.log_tail()}"
        )
    _wait_until_answering(daemon, timeout_s)


def restart_libvirtd(daemon: Libvirtd, *, crash: bool = True) -> None:
    """``kill_libvirtd`` then ``start_libvirtd``: the host's libvirtd restarted under its
    running guests."""
    kill_libvirtd(daemon, crash=crash)
    start_libvirtd(daemon)


def destroy_domains(daemon: Libvirtd) -> list[str]:
    """Power off and undefine every domain of the host (with its managed save and snapshot
    metadata); the names of those there were."""
    import libvirt

    try:
        conn = libvirt.open(daemon.uri)
    except libvirt.libvirtError:
        return []
    names = []
    try:
        for dom in conn.listAllDomains():
            names.append(dom.name())
            with contextlib.suppress(libvirt.libvirtError):
                if dom.isActive():
                    dom.destroy()
            with contextlib.suppress(libvirt.libvirtError):
                dom.undefineFlags(
                    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                    | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                    | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
                )
    finally:
        conn.close()
    return names


def stop(daemon: Libvirtd, *, timeout_s: float = 20.0) -> None:
    """Stop the host: its domains, libvirtd, virtlogd, and any QEMU left behind."""
    if "libvirtd" in daemon.pids and _alive(daemon.pids["libvirtd"]):
        destroy_domains(daemon)
    leftovers = daemon.qemu_pids()
    for program in ("libvirtd", "virtlogd"):
        pid = daemon.pids.get(program)
        if pid is not None:
            _terminate(pid, timeout_s)
    for pid in leftovers + daemon.qemu_pids():
        _terminate(pid, timeout_s)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours counts as gone
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return True


def _is_qemu(pid: int, domain: str = "") -> bool:
    """Is ``pid`` a QEMU (of the domain named ``domain``, if given)?"""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"qemu-system" in command and f"guest={domain}".encode() in command


def _terminate(pid: int, timeout_s: float) -> None:
    """SIGTERM ``pid``, then SIGKILL if it has not exited within ``timeout_s``."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def running(names: list[str], root: Path) -> Iterator[list[Libvirtd]]:
    """The hosts ``names``, each with its state under ``root/<name>``, started together and
    all stopped on the way out (those that started, when another did not)."""
    daemons: list[Libvirtd] = []
    try:
        # side by side: each libvirtd spends most of its start probing QEMU
        with ThreadPoolExecutor(max_workers=len(names) or 1) as pool:
            starts = [pool.submit(start, name, root / name) for name in names]
            for started in starts:
                with contextlib.suppress(LibvirtdError):
                    daemons.append(started.result())
        for started in starts:
            started.result()  # the first failure, once every daemon that started is known
        yield daemons
    finally:
        for daemon in daemons:
            stop(daemon)
