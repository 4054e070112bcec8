"""The realvm suite: the whole system on real QEMU guests, on two hypervisor hosts.

Once per session: the guest is built (deploy/guest/build.sh, or reused from its cache), two
libvirt daemons start, each in namespaces of its own (tests/support/libvirtd.py), and a
``System`` runs against a database of its own with two agents whose libvirt drivers point at
them (``rv-a``, ``rv-b``), the guest registered as an image and two small flavors. Every test
here is marked ``realvm`` and boots at most two guests at once.

Without QEMU, libvirt, root or the guest, the tests skip; with STRATUS_REQUIRE_REALVM=1 (CI)
they fail instead. The wall time of every action is printed as a table at the end of the
session (STRATUS_REALVM_TIMINGS=<file> writes it to a file as well).

STRATUS_REALVM_VIRT_TYPE chooses the domain type (default ``qemu``, TCG: KVM does not work
on the machines CI runs on; ``auto`` lets the driver probe).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, NoReturn

import aiohttp
import pytest

from compute_agent.virt.driver import ComputeDriver
from compute_agent.virt.factory import create_driver, libvirt_available
from shared.config import Settings
from shared.image_data.filesystem import DirectoryImageData
from stratus.images import Guest, ImageImportError, import_guest, read_guest
from stratus.system import System
from tests import conftest
from tests.realvm.cluster import RealCluster
from tests.realvm.stopwatch import STOPWATCH
from tests.support import libvirtd, missing
from tests.support.client import ComputeClient
from tests.support.databases import fresh_database
from tests.support.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
BUILD_GUEST = ROOT / "deploy" / "guest" / "build.sh"
HOSTS = ("rv-a", "rv-b")

#: (id, name, RAM MB, disk GB, vCPUs): small enough for two guests at once on a CI machine
FLAVORS = [
    ("rv.tiny", "rv.tiny", 128, 1, 1),
    ("rv.small", "rv.small", 192, 2, 1),
]


def unavailable(reason: str) -> NoReturn:
    """Skip the realvm tests, or fail them where CI requires them."""
    missing.unavailable(missing.REALVM.format(what=reason), required_by="STRATUS_REQUIRE_REALVM")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.realvm)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not STOPWATCH.timings:
        return
    table = STOPWATCH.table()
    terminalreporter.write_sep("=", "realvm: wall time of each action on real QEMU")
    terminalreporter.write_line(table)
    target = os.environ.get("STRATUS_REALVM_TIMINGS")
    if target:
        Path(target).write_text(table + "\n")


# --- prerequisites -------------------------------------------------------------------------


def missing_prerequisites() -> list[str]:
    """What this machine lacks to run real guests (empty: nothing)."""
    lacking: list[str] = []
    if not sys.platform.startswith("linux"):
        lacking.append("not Linux")
    if os.geteuid() != 0:
        lacking.append("not root (the libvirt daemons run in namespaces of their own)")
    if not libvirt_available():
        lacking.append("the libvirt binding")
    lacking += [f"the program {p}" for p in libvirtd.missing_programs()]
    kvm = Path("/dev/kvm")
    if kvm.exists() and stat.S_IMODE(kvm.stat().st_mode) & 0o060 != 0o060:
        lacking.append(
            "/dev/kvm is not group read-write (libvirtd would probe QEMU again on every "
            "call): chown root:kvm /dev/kvm; chmod 0660 /dev/kvm"
        )
    return lacking


@pytest.fixture(scope="session")
def realvm_ready() -> None:
    lacking = missing_prerequisites()
    if lacking:
        unavailable("; ".join(lacking))


@pytest.fixture(scope="session")
def guest(realvm_ready: None) -> Guest:
    """The guest deploy/guest/build.sh builds (a second when its cache has it)."""
    try:
        built = subprocess.run(
            [str(BUILD_GUEST)], capture_output=True, text=True, timeout=900, check=True
        )
    except (OSError, subprocess.SubprocessError) as exc:
        stderr = getattr(exc, "stderr", "") or ""
        unavailable(f"the guest cannot be built: {exc}\n{stderr[-2000:]}")
    directory = Path(built.stdout.strip().splitlines()[-1])
    try:
        return read_guest(directory)
    except ImageImportError as exc:
        unavailable(str(exc))


@pytest.fixture(scope="session")
def realvm_hosts(
    realvm_ready: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, libvirtd.Libvirtd]]:
    """The two hosts' libvirt daemons, stopped (with their guests) when the session ends."""
    root = tmp_path_factory.mktemp("realvm-hosts")
    try:
        with libvirtd.running(list(HOSTS), root) as daemons:
            yield {d.name: d for d in daemons}
    except libvirtd.LibvirtdError as exc:
        unavailable(str(exc))


# --- the system ----------------------------------------------------------------------------


def realvm_settings(tmp: Path) -> Settings:
    """The system's settings: its gateway on a port known before it starts, which the
    agents download the images servers boot from from (STRATUS_IMAGE_API_URL)."""
    port = free_port()
    return conftest.test_settings(
        tmp,
        api_port=port,
        image_api_url=f"http://127.0.0.1:{port}",
        image_store_dir=tmp / "images",
        libvirt_virt_type=os.environ.get("STRATUS_REALVM_VIRT_TYPE", "qemu"),
        # a guest that ignores its power button is powered off sooner than in production
        libvirt_shutdown_timeout_s=30.0,
    )


def host_settings(settings: Settings, tmp: Path, host: str) -> Settings:
    """The settings of one host's agent: a data directory of its own, so an instances
    directory and a cache of downloaded images of its own (``<data_dir>/instances``,
    ``<data_dir>/_base``), and an image store directory of its own that nothing may need:
    whatever a host needs of the image service's store it gets through the gateway."""
    return settings.model_copy(
        update={"data_dir": tmp / host, "image_store_dir": tmp / host / "no-shared-store"}
    )


def host_driver(settings: Settings, daemon: libvirtd.Libvirtd) -> ComputeDriver:
    """The libvirt driver of one host, as ``stratus agent`` builds it."""
    return create_driver(settings, kind="libvirt", libvirt_uri=daemon.uri)


async def _register(system: System, store: Path, guest: Guest) -> str:
    assert system.pool is not None
    async with system.pool.acquire() as conn:
        imported = await import_guest(conn, DirectoryImageData(store), guest)
        await conn.executemany(
            """INSERT INTO flavors (id, name, ram_mb, disk_gb, vcpus)
               VALUES ($1, $2, $3, $4, $5)""",
            FLAVORS,
        )
    return str(imported.id)


@pytest.fixture(scope="session")
async def realvm(
    guest: Guest,
    realvm_hosts: dict[str, libvirtd.Libvirtd],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[RealCluster]:
    tmp = tmp_path_factory.mktemp("realvm")
    settings = realvm_settings(tmp)
    hosts = {name: host_settings(settings, tmp, name) for name in realvm_hosts}
    drivers = {name: host_driver(hosts[name], d) for name, d in realvm_hosts.items()}
    async with fresh_database() as url:
        system = System(settings, url, drivers)
        await system.start()
        cluster = RealCluster(
            system=system,
            daemons=realvm_hosts,
            drivers=drivers,
            instances_dirs={name: h.instances_dir for name, h in hosts.items()},
            image_caches={name: h.image_cache_dir for name, h in hosts.items()},
            store=settings.image_store,
            guest=guest,
            image_id=await _register(system, settings.image_store, guest),
            stopwatch=STOPWATCH,
        )
        try:
            yield cluster
        finally:
            cluster.close()
            await system.stop()


@pytest.fixture
def tenant() -> str:
    return f"rv{uuid.uuid4().hex[:10]}"


@pytest.fixture
def api(realvm: RealCluster, http: aiohttp.ClientSession, tenant: str) -> ComputeClient:
    """A member of a fresh project: owns the servers."""
    return realvm.client(http, tenant, "alice")


@pytest.fixture
def admin(realvm: RealCluster, http: aiohttp.ClientSession, tenant: str) -> ComputeClient:
    """An administrator, in the same project's URLs."""
    return realvm.client(http, tenant, "admin")


@pytest.fixture(autouse=True)
async def _hosts_end_empty(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Whatever a test leaves (it failed halfway) is deleted through the API, and then no
    domain may be left on either host: a failure never spills into the next test. Only
    where the cluster runs (other tests here bring their own fixtures)."""
    if "realvm" not in request.fixturenames:
        yield
        return
    cluster: RealCluster = request.getfixturevalue("realvm")
    owner: ComputeClient = request.getfixturevalue("admin")
    yield
    listed = await owner.get("/servers")
    for server in listed.body["servers"]:
        await owner.delete(f"/servers/{server['id']}")
    for server in listed.body["servers"]:
        await owner.wait_for_status(server["id"], "DELETED", timeout_s=120)
    assert await cluster.domains() == {host: [] for host in cluster.daemons}
