"""Consoles as people ask for them: ``openstack console url show`` and python-novaclient's
``get_vnc_console`` (what ``nova get-vnc-console`` calls) give a URL whose WebSocket reaches
the guest's display.

The cloud runs in this process on the fake hypervisor, whose guests' display is a TCP server
of the test that greets as a VNC server does (tests/functional/test_consoles.py says why);
tests/realvm/test_consoles.py reaches a real QEMU's.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
import yaml

from compute_agent.virt.driver import ConsoleEndpoint
from compute_agent.virt.fake import FakeDriver
from shared.db import seed
from stratus.system import System
from tests import conftest
from tests.clients.cli import run, table
from tests.clients.conftest import noauth_cloud, nova
from tests.support.databases import fresh_database

BANNER = b"RFB 003.008\n"
PROJECT = "consoles"


async def _greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(BANNER)
    await writer.drain()
    await reader.read()  # until the proxy hangs up
    writer.close()


@pytest.fixture(scope="module")
async def cloud(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    display = await asyncio.start_server(_greet, "127.0.0.1", 0)
    driver = FakeDriver()
    driver.displays["vnc"] = ConsoleEndpoint("127.0.0.1", display.sockets[0].getsockname()[1])
    tmp = tmp_path_factory.mktemp("console-clients")
    async with fresh_database() as url:
        system = System(conftest.test_settings(tmp), url, {"console-clients": driver})
        await system.start()
        try:
            yield system.url
        finally:
            await system.stop()
            display.close()
            await display.wait_closed()


@pytest.fixture(scope="module")
def clouds_yaml(cloud: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("console-clouds") / "clouds.yaml"
    path.write_text(yaml.safe_dump({"clouds": {"stratus": noauth_cloud(cloud, PROJECT, "alice")}}))
    return path


async def _openstack(clouds_yaml: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update({"OS_CLIENT_CONFIG_FILE": str(clouds_yaml), "OS_CLOUD": "stratus"})
    return await asyncio.to_thread(run, "openstack", env, *args)


@pytest.fixture(scope="module")
async def server(clouds_yaml: Path) -> AsyncIterator[str]:
    image, flavor = seed.DEFAULT_IMAGES[0][0], "m1.tiny"
    created = await _openstack(
        clouds_yaml, "server", "create", "--image", image, "--flavor", flavor, "--wait",
        "-f", "json", "console",
    )  # fmt: skip
    server_id: str = json.loads(created)["id"]
    yield server_id
    await _openstack(clouds_yaml, "server", "delete", "--wait", server_id)


async def _banner_through(url: str) -> bytes:
    """What the display says first, through the WebSocket the console URL leads to."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    path = query["path"][0] if "path" in query else f"{parts.path.lstrip('/')}?{parts.query}"
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"ws://{parts.netloc}/{path}", protocols=("binary",)) as ws,
    ):
        message = await asyncio.wait_for(ws.receive(), 10)
        assert message.type is aiohttp.WSMsgType.BINARY, message
        data: bytes = message.data
        return data


async def test_openstack_console_url_show_reaches_the_display(
    clouds_yaml: Path, server: str
) -> None:
    for option, kind in (("--novnc", "novnc"), ("--xvpvnc", "xvpvnc")):
        shown = table(await _openstack(clouds_yaml, "console", "url", "show", option, server))
        assert shown["type"] == kind
        assert await _banner_through(shown["url"]) == BANNER


async def test_novaclient_s_vnc_console_reaches_the_display(cloud: str, server: str) -> None:
    found = await asyncio.to_thread(nova(cloud, PROJECT, "alice").servers.get, server)
    console = (await asyncio.to_thread(found.get_vnc_console, "novnc"))["console"]
    assert console["type"] == "novnc"
    assert await _banner_through(console["url"]) == BANNER
