"""Consoles without a system: the displays in domain documents, the agent's answers to console
calls, the URLs the gateway answers, and the proxy's relay against a TCP echo server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp import web

from api_gateway.consoles import proxy, types
from compute_agent.consoles import ConsoleResponder
from compute_agent.virt.driver import ConsoleEndpoint
from compute_agent.virt.fake import FakeDriver
from compute_agent.virt.libvirt import domain_xml
from shared.config import Settings
from shared.messages import (
    ConsoleAnswer,
    FlavorSpec,
    GetConsole,
    ImageSpec,
    InstanceSpec,
    PurgeServers,
)

SERVER = uuid.uuid4()
INSTANCE = InstanceSpec(
    server_id=SERVER,
    name="web",
    flavor=FlavorSpec(id="1", name="m1.tiny", vcpus=1, ram_mb=512, disk_gb=1),
    image=ImageSpec(id=uuid.uuid4(), name="cirros"),
)


# --- domain documents ----------------------------------------------------------------------


def test_a_domain_gets_its_displays_on_the_listen_address() -> None:
    xml = domain_xml.build(
        INSTANCE,
        domain_type="qemu",
        disk_path=Path("/d"),
        displays=("vnc", "spice"),
        display_listen="10.0.0.5",
    )
    assert '<graphics type="vnc" autoport="yes" listen="10.0.0.5">' in xml
    assert '<graphics type="spice" autoport="yes" listen="10.0.0.5">' in xml
    assert "<graphics" not in domain_xml.build(INSTANCE, domain_type="qemu", disk_path=Path("/d"))


LIVE = """<domain><devices>
  <graphics type='vnc' port='5901' autoport='yes' listen='0.0.0.0'>
    <listen type='address' address='0.0.0.0'/></graphics>
  <graphics type='spice' port='-1' autoport='yes'><listen type='address'/></graphics>
</devices></domain>"""


def test_the_display_is_read_from_the_live_document() -> None:
    assert domain_xml.display(LIVE, "vnc") == ("0.0.0.0", 5901)
    assert domain_xml.display(LIVE, "spice") is None  # no port yet: QEMU does not run it
    assert domain_xml.display("<domain><devices/></domain>", "vnc") is None


# --- the agent's answers ---------------------------------------------------------------------


def _call(protocol: str = "vnc") -> GetConsole:
    return GetConsole(
        request_id="req-1", server_id=SERVER, domain_name=INSTANCE.domain_name, protocol=protocol
    )


async def _answer(driver: FakeDriver, protocol: str = "vnc") -> ConsoleAnswer:
    answer = await ConsoleResponder(driver)(_call(protocol))
    assert isinstance(answer, ConsoleAnswer)
    assert (answer.request_id, answer.server_id) == ("req-1", SERVER)
    return answer


async def test_the_agent_answers_where_a_running_guest_s_display_is() -> None:
    driver = FakeDriver()
    await driver.init_host("h1")
    assert (await _answer(driver)).refused == "unsupported"  # no displays at all
    driver.displays["vnc"] = ConsoleEndpoint("192.0.2.1", 5900)
    assert (await _answer(driver)).refused == "not_ready"  # no such guest here
    await driver.spawn(INSTANCE, "pw")
    answer = await _answer(driver)
    assert (answer.refused, answer.host, answer.port) == (None, "192.0.2.1", 5900)
    assert (await _answer(driver, "spice")).refused == "unavailable"
    await driver.power_off(INSTANCE.domain_name)
    assert (await _answer(driver)).refused == "not_ready"


async def test_the_agent_answers_no_other_call() -> None:
    with pytest.raises(TypeError):
        await ConsoleResponder(FakeDriver())(PurgeServers(host="h1", servers=[]))


# --- URLs ------------------------------------------------------------------------------------


def test_a_page_url_names_its_websocket_with_the_token() -> None:
    settings = Settings(novncproxy_base_url="https://c.example.com/vnc/vnc_auto.html")
    url = types.url(settings, "http://gw:8774", types.TYPES["novnc"], "tok-1")
    assert url.startswith("https://c.example.com/vnc/vnc_auto.html?token=tok-1&")
    assert parse_qs(urlsplit(url).query)["path"] == ["vnc/websockify?token=tok-1"]
    xvp = types.url(Settings(), "http://gw:8774", types.TYPES["xvpvnc"], "tok-2")
    assert xvp == "http://gw:8774/consoles/xvpvnc/console?token=tok-2"


def test_each_action_takes_only_its_own_types() -> None:
    assert types.of_action("os-getVNCConsole", "novnc") is types.TYPES["novnc"]
    assert types.of_action("os-getVNCConsole", "spice-html5") is None
    assert types.of_action("os-getSPICEConsole", "spice-html5") is types.TYPES["spice-html5"]
    assert types.of_action("os-getSPICEConsole", ["novnc"]) is None


# --- the relay -------------------------------------------------------------------------------


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while chunk := await reader.read(1024):
        writer.write(chunk)
        await writer.drain()
    writer.close()


@pytest.fixture
async def relay_url() -> AsyncIterator[str]:
    """A WebSocket that splices every connection to a TCP echo server."""
    echo = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = echo.sockets[0].getsockname()[1]

    async def handler(request: web.Request) -> web.StreamResponse:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        ws = web.WebSocketResponse(protocols=(proxy.SUBPROTOCOL,))
        await ws.prepare(request)
        await proxy.splice(ws, reader, writer)
        writer.close()
        await ws.close()
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, web_port = runner.addresses[0][:2]
    try:
        yield f"ws://{host}:{web_port}/ws"
    finally:
        await runner.cleanup()
        echo.close()
        await echo.wait_closed()


async def test_the_relay_copies_bytes_both_ways_and_refuses_text(relay_url: str) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(relay_url) as ws:
        payload = bytes(range(256)) * 1024  # more than one read of the display
        await ws.send_bytes(payload)
        got = b""
        while len(got) < len(payload):
            message = await asyncio.wait_for(ws.receive(), 5)
            assert message.type is aiohttp.WSMsgType.BINARY
            got += message.data
        assert got == payload
        await ws.send_str("text")
        closed = await asyncio.wait_for(ws.receive(), 5)
        assert closed.type is aiohttp.WSMsgType.CLOSE
        assert closed.data == 1003


# --- libvirt ---------------------------------------------------------------------------------


async def test_libvirt_s_test_hypervisor_has_no_consoles(tmp_path: Path) -> None:
    pytest.importorskip("libvirt")
    from compute_agent.virt.driver import ConsoleNotSupported
    from compute_agent.virt.libvirt.driver import LibvirtDriver

    driver = LibvirtDriver("test:///default", tmp_path)
    await driver.init_host("h1")
    try:
        await driver.spawn(INSTANCE, "pw")
        with pytest.raises(ConsoleNotSupported):
            await driver.get_console(INSTANCE.domain_name, "vnc")
        await driver.destroy(INSTANCE.domain_name)
    finally:
        await driver.close()


def test_libvirt_reads_the_port_qemu_chose() -> None:
    pytest.importorskip("libvirt")
    from compute_agent.virt.driver import ConsoleNotReady, ConsoleUnavailable
    from compute_agent.virt.libvirt import consoles

    class Domain:
        def __init__(self, xml: str, active: bool = True) -> None:
            self.xml, self.active = xml, active

        def isActive(self) -> bool:
            return self.active

        def XMLDesc(self, flags: int) -> str:
            return self.xml

    class Connection:
        def __init__(self, dom: Domain) -> None:
            self.dom = dom

        def lookupByName(self, name: str) -> Domain:
            return self.dom

    found = consoles.endpoint(Connection(Domain(LIVE)), "d", "vnc", None)
    assert found == ConsoleEndpoint("127.0.0.1", 5901)  # a wildcard is reached on loopback
    assert consoles.endpoint(Connection(Domain(LIVE)), "d", "vnc", "10.1.1.1").host == "10.1.1.1"
    with pytest.raises(ConsoleUnavailable):
        consoles.endpoint(Connection(Domain(LIVE)), "d", "spice", None)
    with pytest.raises(ConsoleNotReady):
        consoles.endpoint(Connection(Domain(LIVE, active=False)), "d", "vnc", None)


def test_a_page_file_is_never_read_outside_its_package(tmp_path: Path) -> None:
    from api_gateway.consoles.pages import _inside

    (tmp_path / "novnc").mkdir()
    (tmp_path / "novnc" / "vnc.html").write_text("page")
    (tmp_path / "secret").write_text("no")
    assert _inside(tmp_path / "novnc", "vnc.html") == (tmp_path / "novnc" / "vnc.html").resolve()
    assert _inside(tmp_path / "novnc", "../secret") is None
    assert _inside(tmp_path / "novnc", "x" * 5000) is None
