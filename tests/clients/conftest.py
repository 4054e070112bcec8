"""`stratus up` as a user runs it (`make run`: embedded PostgreSQL, in-process bus, the
default hosts), in its own process, for tests that drive it with real client libraries."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from keystoneauth1 import session
from keystoneauth1.token_endpoint import Token
from novaclient import client as nova_client
from novaclient.v2.client import Client as NovaClient

from tests.support.processes import STRATUS, free_port

HOST = "stratus-clients"
HOSTS = (f"{HOST}-1", f"{HOST}-2")


@pytest.fixture(scope="session")
def stratus_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The endpoint of a `stratus up` on a data directory of its own."""
    data = tmp_path_factory.mktemp("stratus-up")
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
    for name in ("STRATUS_DATABASE_URL", "STRATUS_AMQP_URL", "STRATUS_UP_AGENTS"):
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
