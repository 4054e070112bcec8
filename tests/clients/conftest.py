"""Stratus as people reach it, for tests that drive it with the real clients.

* ``stratus_up``: `stratus up` as a user runs it (`make run`: embedded PostgreSQL, in-process
  bus, the default hosts, noauth), in its own process;
* ``keystone_cloud``: a Keystone-run cloud: a real Keystone (tests/support/keystone.py) whose
  catalog points at a gateway with the keystone strategy, a conductor and two agents, each a
  process of its own over the machine's RabbitMQ and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from keystoneauth1 import session
from keystoneauth1.token_endpoint import Token
from novaclient import client as nova_client
from novaclient.v2.client import Client as NovaClient

from tests.clients.cli import run
from tests.support.databases import fresh_database
from tests.support.keystone import Keystone, populate, running_keystone
from tests.support.processes import STRATUS, Processes, free_port, wait_for_hosts
from tests.support.rabbitmq import delete_topology, require_rabbitmq, unique_prefix

HOST = "stratus-clients"
HOSTS = (f"{HOST}-1", f"{HOST}-2")


@pytest.fixture(scope="session")
def stratus_up_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data directory of ``stratus_up`` (its hosts' instance directories are under it)."""
    return tmp_path_factory.mktemp("stratus-up")


@pytest.fixture(scope="session")
def stratus_up(stratus_up_data: Path) -> Iterator[str]:
    """The endpoint of a `stratus up` on a data directory of its own."""
    data = stratus_up_data
    port = free_port()
    env = {
        **os.environ,
        "STRATUS_DATA_DIR": str(data),
        "STRATUS_API_PORT": str(port),
        # many requests in a few seconds: the default rate limits would refuse them
        "STRATUS_RATE_LIMITS": "",
        # known host names (<host>-1 and <host>-2, the two hosts `up` starts by default)
        "STRATUS_HOST": HOST,
    }
    # all its own: database, bus and message key (made in its data directory)
    for name in (
        "STRATUS_DATABASE_URL",
        "STRATUS_AMQP_URL",
        "STRATUS_UP_AGENTS",
        "STRATUS_MESSAGE_KEY",
    ):
        env.pop(name, None)
    log = (Path(data) / "up.log").open("wb")
    process = subprocess.Popen([STRATUS, "up"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(url, process, Path(data) / "up.log")
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def _wait_until_serving(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"stratus up exited:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"stratus up never answered:\n{log.read_text()[-3000:]}")


def nova(url: str, project: str, user: str) -> NovaClient:
    """python-novaclient as a user of ``project`` (noauth token ``user:project``), talking
    to the endpoint a catalog would give it."""
    auth = Token(f"{url}/v2/{project}", f"{user}:{project}")
    client: NovaClient = nova_client.Client("2", session=session.Session(auth=auth))
    return client


# --- a Keystone-run cloud: real Keystone, Stratus as separate processes ------------------------

BIN = Path(sys.executable).parent


def noauth_cloud(url: str, project: str, user: str) -> dict[str, object]:
    """The clouds.yaml entry for `stratus up` as ``user`` of ``project`` (docs/clients.md)."""
    return {
        "auth_type": "admin_token",
        "auth": {"endpoint": f"{url}/v2/{project}", "token": f"{user}:{project}"},
        "compute_endpoint_override": f"{url}/v2/{project}",
        "image_endpoint_override": f"{url}/image",
        # no identity service: the CLI's `server list` wants an identity client all the
        # same; pointed here, it finds no identity API and carries on without one
        "identity_endpoint_override": f"{url}/",
        "identity_api_version": 3,
    }


@pytest.fixture
def noauth_clouds(stratus_up: str, tmp_path: Path) -> Path:
    """A clouds.yaml of `stratus up` (docs/clients.md) with the clouds ``alice`` and ``bob``,
    members of one fresh project of their own."""
    project = f"p{uuid.uuid4().hex[:10]}"
    path = tmp_path / "clouds.yaml"
    clouds = {user: noauth_cloud(stratus_up, project, user) for user in ("alice", "bob")}
    path.write_text(yaml.safe_dump({"clouds": clouds}))
    return path


KEYSTONE_HOSTS = ("kscloud-a", "kscloud-b")


@dataclass
class KeystoneCloud:
    """Keystone with the catalog pointing at a Stratus of a gateway (keystone strategy), a
    conductor and two agents on libvirt's test hypervisor (or the fake one)."""

    keystone: Keystone
    url: str
    database_url: str
    processes: Processes

    def env(self, user: str) -> dict[str, str]:
        """The environment of a command-line client run as ``user``."""
        clean = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        return {**clean, **self.keystone.environment(user)}

    def nova(self, user: str, *args: str) -> str:
        """``nova args`` as ``user``."""
        return run("nova", self.env(user), *args)

    def clouds_yaml(self, path: Path, users: tuple[str, ...]) -> Path:
        """A clouds.yaml at ``path`` with one cloud per user, named as the user."""
        clouds = {}
        for user in users:
            who = self.keystone.users[user]
            clouds[user] = {
                "auth": {
                    "auth_url": self.keystone.url,
                    "username": who.name,
                    "password": who.password,
                    "project_name": who.project,
                    "user_domain_name": "Default",
                    "project_domain_name": "Default",
                },
                "region_name": "RegionOne",
                "identity_api_version": 3,
            }
        path.write_text(yaml.safe_dump({"clouds": clouds}))
        return path


@pytest.fixture(scope="session")
async def keystone_cloud(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[KeystoneCloud]:
    amqp_url = await require_rabbitmq()
    tmp = tmp_path_factory.mktemp("keystone-cloud")
    (tmp / "keystone").mkdir()
    port, keystone_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    prefix = unique_prefix()
    with running_keystone(tmp / "keystone", keystone_port) as keystone:
        await asyncio.to_thread(populate, keystone, f"{url}/v2/%(tenant_id)s", f"{url}/image")
        service = keystone.users["stratus"]
        async with fresh_database() as database_url:
            processes = Processes(
                tmp,
                {
                    "STRATUS_DATABASE_URL": database_url,
                    "STRATUS_AMQP_URL": amqp_url,
                    "STRATUS_AMQP_PREFIX": prefix,
                    "STRATUS_API_PORT": str(port),
                    "STRATUS_DATA_DIR": str(tmp / "data"),
                    "STRATUS_HEARTBEAT_INTERVAL_S": "1",
                    "STRATUS_LIBVIRT_URI": "test:///default",
                    "STRATUS_RATE_LIMITS": "",
                    "STRATUS_AUTH_STRATEGY": "keystone",
                    "STRATUS_KEYSTONE_URL": keystone.url,
                    "STRATUS_KEYSTONE_USERNAME": service.name,
                    "STRATUS_KEYSTONE_PASSWORD": service.password,
                    "STRATUS_KEYSTONE_PROJECT": service.project,
                },
            )
            processes.start("conductor", "conductor")
            for host in KEYSTONE_HOSTS:
                processes.start(host, "agent", "--host", host)
            processes.start("api", "api")
            try:
                await asyncio.to_thread(
                    _wait_until_serving, url, processes.running[-1][1], tmp / "api.log"
                )
                await wait_for_hosts(database_url, len(KEYSTONE_HOSTS))
                yield KeystoneCloud(keystone, url, database_url, processes)
            except BaseException:
                print(processes.logs())
                raise
            finally:
                processes.stop_all()
                queues = [f"compute.{host}" for host in KEYSTONE_HOSTS]
                await delete_topology(prefix, ["conductor", "reports", "heartbeats", *queues])
