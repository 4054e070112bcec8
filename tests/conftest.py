"""Fixtures that start real things once per session: a PostgreSQL database and the system."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from compute_agent.virt.driver import ComputeDriver
from compute_agent.virt.factory import libvirt_available
from compute_agent.virt.fake import FakeDriver
from shared.config import Settings
from shared.db import seed
from stratus.system import System
from tests.support.client import ComputeClient
from tests.support.databases import fresh_database
from tests.support.missing import summarize
from tests.support.sealing import MESSAGE_KEY

IMAGE = str(seed.image_id(seed.DEFAULT_IMAGES[0][0]))


def test_settings(tmp: Path, **overrides: object) -> Settings:
    """Settings for an in-process system: no environment leaks in, ephemeral port."""
    values: dict[str, object] = {
        "api_host": "127.0.0.1",
        "api_port": 0,
        "data_dir": tmp,
        "heartbeat_interval_s": 1.0,
        "host_down_after_s": 30.0,
        "amqp_url": None,
        "database_url": None,
        "rate_limits": "",  # tests of rate limiting use an application of their own
        # the shared system's tests build many or huge servers in one project; quota tests
        # use an application of their own
        "quota_instances": -1,
        "quota_cores": -1,
        "quota_ram_mb": -1,
        "message_key": MESSAGE_KEY,
        # no gateway removes deleted images' data behind the tests' backs (tests that compare
        # the database before and after would see it); the tests of it call it, or ask
        "image_purge_interval_s": 0,
    }
    values.update(overrides)
    return Settings.model_validate(values)


def make_driver(tmp: Path, **capacity: int) -> ComputeDriver:
    """The libvirt driver on the test hypervisor when the binding is installed, else fake."""
    if libvirt_available():
        from compute_agent.virt.libvirt.driver import LibvirtDriver

        return LibvirtDriver("test:///default", tmp / "instances", **capacity)  # type: ignore[arg-type]
    return FakeDriver(**capacity, instances_dir=tmp / "instances")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """What did not run on this machine and how to get it, one line per reason."""
    lines = summarize(terminalreporter.stats.get("skipped", []))
    if lines:
        terminalreporter.write_sep("-", "skipped: what this machine lacks")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    async with fresh_database() as url:
        yield url


@pytest.fixture(scope="session")
async def system(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[System]:
    tmp = tmp_path_factory.mktemp("system")
    settings = test_settings(tmp)
    driver = make_driver(tmp, vcpus=64, ram_mb=65536, disk_gb=2000)
    the_system = System(settings, database_url, {"functional-host": driver})
    await the_system.start()
    yield the_system
    await the_system.stop()


@pytest.fixture(scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def tenant() -> str:
    """A project of its own for each test, so tests never see each other's servers."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def client_for(system: System, http: aiohttp.ClientSession) -> Callable[[str, str], ComputeClient]:
    def make(tenant: str, user: str = "alice") -> ComputeClient:
        return ComputeClient(http, system.url, tenant, user)

    return make


@pytest.fixture
def api(client_for: Callable[[str, str], ComputeClient], tenant: str) -> ComputeClient:
    """A member of a fresh project."""
    return client_for(tenant, "alice")
