"""nova 2013.1's os-consoles: the console actions (JSON and XML, against
samples/nova-2013.1/os-consoles), their refusals, and the console proxy end to end.

The system here runs one host on the fake hypervisor, whose guests' displays are served
where the test says (``FakeDriver.displays``): a TCP server of the test stands in for QEMU's
VNC server, sending the RFB banner and echoing what it gets, so the proxy's relay is checked
byte for byte without QEMU (tests/realvm/test_consoles.py does it on a real guest).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
import yarl

from compute_agent.virt.driver import ConsoleEndpoint
from compute_agent.virt.fake import FakeDriver
from stratus.system import System
from tests import conftest
from tests.conformance.shapes import compare_json, compare_xml
from tests.support.actions import active_server
from tests.support.client import ComputeClient
from tests.support.databases import fresh_database
from tests.support.gateway import gateway_of_its_own
from tests.support.xml import sample, send

IMAGE = conftest.IMAGE
HOST = "console-host"
SAMPLES = "nova-2013.1/os-consoles"
BANNER = b"RFB 003.008\n"


@dataclass
class Consoles:
    system: System
    driver: FakeDriver
    display: ConsoleEndpoint
    tmp: Path


async def _stand_in_display(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """What a VNC server does first (its protocol version), then an echo of every byte."""
    writer.write(BANNER)
    await writer.drain()
    while chunk := await reader.read(4096):
        writer.write(chunk)
        await writer.drain()
    writer.close()


@pytest.fixture(scope="module")
async def consoles(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Consoles]:
    display = await asyncio.start_server(_stand_in_display, "127.0.0.1", 0)
    port = display.sockets[0].getsockname()[1]
    endpoint = ConsoleEndpoint("127.0.0.1", port)
    driver = FakeDriver()
    driver.displays["vnc"] = endpoint
    tmp = tmp_path_factory.mktemp("consoles")
    async with fresh_database() as url:
        system = System(conftest.test_settings(tmp), url, {HOST: driver})
        await system.start()
        try:
            yield Consoles(system, driver, endpoint, tmp)
        finally:
            await system.stop()
            display.close()
            await display.wait_closed()


@pytest.fixture
def api(consoles: Consoles, http: aiohttp.ClientSession, tenant: str) -> ComputeClient:
    return ComputeClient(http, consoles.system.url, tenant, "alice")


@pytest.fixture
async def server(api: ComputeClient) -> AsyncIterator[str]:
    server_id = await active_server(api, "console", IMAGE)
    yield server_id
    await api.delete_and_wait(server_id)


async def _console(api: ComputeClient, server_id: str, action: str, kind: str) -> Any:
    return await api.post(f"/servers/{server_id}/action", {action: {"type": kind}})


def _fault(reply: Any) -> tuple[int, str, str]:
    ((name, fault),) = reply.body.items()
    return reply.status, name, fault["message"]


# --- the extension ----------------------------------------------------------------------


async def test_the_extension_is_listed(api: ComputeClient) -> None:
    listed = await api.get("/extensions")
    aliases = {e["alias"]: e for e in listed.body["extensions"]}
    assert aliases["os-consoles"]["name"] == "Consoles"
    one = await api.get("/extensions/os-consoles")
    assert one.status == 200
    assert one.body["extension"]["namespace"] == (
        "http://docs.openstack.org/compute/ext/os-consoles/api/v2"
    )


# --- the actions, as the samples show them -----------------------------------------------


async def test_a_novnc_console_as_the_json_sample(
    api: ComputeClient, server: str, consoles: Consoles
) -> None:
    body = json.loads(sample(f"{SAMPLES}/get-vnc-console-post-req.json"))
    reply = await api.post(f"/servers/{server}/action", body)
    assert reply.status == 200, reply
    compare_json(json.loads(sample(f"{SAMPLES}/get-vnc-console-post-resp.json")), reply.body)
    url = reply.body["console"]["url"]
    assert reply.body["console"]["type"] == "novnc"
    assert url.startswith(f"{consoles.system.url}/consoles/novnc/vnc_auto.html?token=")
    query = parse_qs(urlsplit(url).query)
    token = query["token"][0]
    assert query["path"] == [f"consoles/novnc/websockify?token={token}"]


async def test_a_novnc_console_as_the_xml_sample(api: ComputeClient, server: str) -> None:
    reply = await send(
        api,
        "POST",
        f"/servers/{server}/action",
        sample(f"{SAMPLES}/get-vnc-console-post-req.xml"),
    )
    assert reply.status == 200, reply.text
    compare_xml(sample(f"{SAMPLES}/get-vnc-console-post-resp.xml").encode(), reply.text.encode())
    assert reply.xml.findtext("type") == "novnc"
    assert "/consoles/novnc/vnc_auto.html?token=" in (reply.xml.findtext("url") or "")


async def test_an_xvpvnc_console_is_the_websocket_itself(
    api: ComputeClient, server: str, consoles: Consoles
) -> None:
    reply = await _console(api, server, "os-getVNCConsole", "xvpvnc")
    assert reply.status == 200, reply
    assert reply.body["console"]["url"].startswith(
        f"{consoles.system.url}/consoles/xvpvnc/console?token="
    )


async def test_spice_where_the_host_has_no_spice_is_nova_s_unavailable_type(
    api: ComputeClient, server: str
) -> None:
    body = json.loads(sample(f"{SAMPLES}/get-spice-console-post-req.json"))
    reply = await api.request("POST", f"/servers/{server}/action", body, check_schema=False)
    assert _fault(reply) == (400, "badRequest", "Unavailable console type spice-html5.")
    xml_reply = await send(
        api,
        "POST",
        f"/servers/{server}/action",
        sample(f"{SAMPLES}/get-spice-console-post-req.xml"),
        check_schema=False,
    )
    assert xml_reply.status == 400
    assert xml_reply.xml.tag.endswith("badRequest")


async def test_a_spice_console_when_the_host_has_one(
    api: ComputeClient, server: str, consoles: Consoles
) -> None:
    consoles.driver.displays["spice"] = consoles.display
    try:
        reply = await _console(api, server, "os-getSPICEConsole", "spice-html5")
    finally:
        del consoles.driver.displays["spice"]
    assert reply.status == 200, reply
    compare_json(json.loads(sample(f"{SAMPLES}/get-spice-console-post-resp.json")), reply.body)
    assert "/consoles/spice/spice_auto.html?token=" in reply.body["console"]["url"]


# --- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "kind"),
    [
        ("os-getVNCConsole", "vnc"),
        ("os-getVNCConsole", "spice-html5"),
        ("os-getSPICEConsole", "novnc"),
        ("os-getVNCConsole", None),
    ],
)
async def test_a_type_the_action_does_not_take_is_400(
    api: ComputeClient, server: str, action: str, kind: str | None
) -> None:
    reply = await api.request(
        "POST", f"/servers/{server}/action", {action: {"type": kind}}, check_schema=False
    )
    assert _fault(reply) == (400, "badRequest", f"Invalid console type {kind}")


async def test_a_body_that_is_no_object_is_400(api: ComputeClient, server: str) -> None:
    reply = await api.request(
        "POST", f"/servers/{server}/action", {"os-getVNCConsole": "novnc"}, check_schema=False
    )
    assert reply.status == 400


async def test_an_unknown_server_is_404(api: ComputeClient) -> None:
    reply = await api.request(
        "POST",
        f"/servers/{uuid.uuid4()}/action",
        {"os-getVNCConsole": {"type": "novnc"}},
        check_schema=False,
    )
    assert reply.status == 404


async def test_another_project_s_server_is_404(
    consoles: Consoles, http: aiohttp.ClientSession, server: str
) -> None:
    stranger = ComputeClient(http, consoles.system.url, f"t{uuid.uuid4().hex[:10]}", "mallory")
    reply = await stranger.request(
        "POST",
        f"/servers/{server}/action",
        {"os-getVNCConsole": {"type": "novnc"}},
        check_schema=False,
    )
    assert reply.status == 404


async def test_a_server_that_is_not_active_is_409(api: ComputeClient, server: str) -> None:
    assert (await api.post(f"/servers/{server}/action", {"os-stop": None})).status == 202
    await api.wait_for_status(server, "SHUTOFF")
    reply = await api.request(
        "POST",
        f"/servers/{server}/action",
        {"os-getVNCConsole": {"type": "novnc"}},
        check_schema=False,
    )
    assert _fault(reply) == (409, "conflictingRequest", "Instance not yet ready")


async def test_a_locked_server_still_gives_its_console(api: ComputeClient, server: str) -> None:
    assert (await api.post(f"/servers/{server}/action", {"lock": None})).status == 202
    reply = await _console(api, server, "os-getVNCConsole", "novnc")
    assert (await api.post(f"/servers/{server}/action", {"unlock": None})).status == 202
    assert reply.status == 200, reply


async def test_a_hypervisor_without_consoles_is_501(
    api: ComputeClient, server: str, consoles: Consoles
) -> None:
    saved = dict(consoles.driver.displays)
    consoles.driver.displays.clear()
    try:
        reply = await api.request(
            "POST",
            f"/servers/{server}/action",
            {"os-getVNCConsole": {"type": "novnc"}},
            check_schema=False,
        )
    finally:
        consoles.driver.displays.update(saved)
    assert _fault(reply) == (
        501,
        "notImplemented",
        "Unable to get vnc console, functionality not implemented",
    )


async def test_a_host_that_does_not_answer_is_503(
    consoles: Consoles, http: aiohttp.ClientSession, tenant: str, server: str
) -> None:
    held = consoles.driver.hold("get_console")
    try:
        async with gateway_of_its_own(
            consoles.system, consoles.tmp, console_call_timeout_s=0.3
        ) as url:
            reply = await ComputeClient(http, url, tenant, "alice").request(
                "POST",
                f"/servers/{server}/action",
                {"os-getVNCConsole": {"type": "novnc"}},
                check_schema=False,
            )
    finally:
        held.set()
    assert reply.status == 503


async def test_a_host_is_not_believed_about_a_port_no_display_has(
    api: ComputeClient, server: str, consoles: Consoles
) -> None:
    consoles.driver.displays["vnc"] = ConsoleEndpoint("127.0.0.1", 5432)  # PostgreSQL's
    try:
        reply = await api.request(
            "POST",
            f"/servers/{server}/action",
            {"os-getVNCConsole": {"type": "novnc"}},
            check_schema=False,
        )
    finally:
        consoles.driver.displays["vnc"] = consoles.display
    assert reply.status == 503


async def test_consoles_change_nothing_on_the_server(
    api: ComputeClient, server: str, consoles: Consoles
) -> None:
    assert (await _console(api, server, "os-getVNCConsole", "novnc")).status == 200
    actions = await api.get(f"/servers/{server}/os-instance-actions")
    assert [a["action"] for a in actions.body["instanceActions"]] == ["create"]


# --- the proxy -------------------------------------------------------------------------------


def _websocket(console_url: str) -> str:
    """The WebSocket a console URL's page opens (its ``path``), as noVNC computes it."""
    parts = urlsplit(console_url)
    path = parse_qs(parts.query)["path"][0]
    return f"ws://{parts.netloc}/{path}"


async def _open(http: aiohttp.ClientSession, url: str) -> aiohttp.ClientWebSocketResponse:
    return await http.ws_connect(url, protocols=("binary",), timeout=aiohttp.ClientWSTimeout(5))


async def test_the_proxy_relays_the_display_both_ways(
    api: ComputeClient, server: str, http: aiohttp.ClientSession
) -> None:
    reply = await _console(api, server, "os-getVNCConsole", "novnc")
    ws = await _open(http, _websocket(reply.body["console"]["url"]))
    try:
        assert ws.protocol == "binary"
        assert await _read(ws, len(BANNER)) == BANNER
        payload = bytes(range(256)) * 64
        await ws.send_bytes(payload)
        assert await _read(ws, len(payload)) == payload
    finally:
        await ws.close()


async def test_the_xvpvnc_url_is_a_websocket_too(
    api: ComputeClient, server: str, http: aiohttp.ClientSession
) -> None:
    reply = await _console(api, server, "os-getVNCConsole", "xvpvnc")
    ws_url = reply.body["console"]["url"].replace("http://", "ws://", 1)
    ws = await _open(http, ws_url)
    try:
        assert await _read(ws, len(BANNER)) == BANNER
    finally:
        await ws.close()


async def _read(ws: aiohttp.ClientWebSocketResponse, size: int) -> bytes:
    """``size`` bytes from binary frames, however the proxy cut them."""
    got = b""
    while len(got) < size:
        message = await asyncio.wait_for(ws.receive(), 5)
        assert message.type is aiohttp.WSMsgType.BINARY, message
        got += message.data
    return got


async def test_an_unknown_token_opens_nothing(
    consoles: Consoles, http: aiohttp.ClientSession
) -> None:
    url = f"{consoles.system.url}/consoles/novnc/websockify?token={uuid.uuid4()}"
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await _open(http, url.replace("http://", "ws://", 1))
    assert refused.value.status == 401
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await _open(http, f"{consoles.system.url}/consoles/novnc/websockify")


async def test_an_expired_token_opens_nothing(
    consoles: Consoles, http: aiohttp.ClientSession, tenant: str, server: str
) -> None:
    async with gateway_of_its_own(
        consoles.system, consoles.tmp, console_token_ttl_s=0.5
    ) as gateway:
        api = ComputeClient(http, gateway, tenant, "alice")
        reply = await _console(api, server, "os-getVNCConsole", "novnc")
        ws_url = _websocket(reply.body["console"]["url"])
        ws = await _open(http, ws_url)  # still valid
        await ws.close()
        await asyncio.sleep(1.0)
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await _open(http, ws_url)
    assert refused.value.status == 401


async def test_a_deleted_server_s_token_opens_nothing(
    api: ComputeClient, http: aiohttp.ClientSession
) -> None:
    server_id = await active_server(api, "short-lived", IMAGE)
    reply = await _console(api, server_id, "os-getVNCConsole", "novnc")
    await api.delete_and_wait(server_id)
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await _open(http, _websocket(reply.body["console"]["url"]))
    assert refused.value.status == 401


async def test_the_proxy_wants_a_websocket(
    api: ComputeClient, server: str, http: aiohttp.ClientSession
) -> None:
    reply = await _console(api, server, "os-getVNCConsole", "novnc")
    plain = _websocket(reply.body["console"]["url"]).replace("ws://", "http://", 1)
    async with http.get(plain) as response:
        assert response.status == 400


async def test_the_page_is_404_without_novnc_installed(
    consoles: Consoles, http: aiohttp.ClientSession
) -> None:
    if consoles.system.settings.novnc_dir.is_dir():
        pytest.skip("noVNC is installed here: its page is served")
    async with http.get(f"{consoles.system.url}/consoles/novnc/vnc_auto.html") as response:
        assert response.status == 404


async def test_novnc_1_x_s_lite_page_stands_in_for_vnc_auto(
    consoles: Consoles, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    novnc = tmp_path / "novnc"
    (novnc / "core").mkdir(parents=True)
    (novnc / "vnc_lite.html").write_text("<html>lite</html>")
    (novnc / "core" / "rfb.js").write_text("// rfb")
    (tmp_path / "secret").write_text("not for you")
    async with gateway_of_its_own(consoles.system, consoles.tmp, novnc_dir=novnc) as url:
        async with http.get(f"{url}/consoles/novnc/vnc_auto.html") as page:
            assert (page.status, await page.text()) == (200, "<html>lite</html>")
        async with http.get(f"{url}/consoles/novnc/core/rfb.js") as script:
            assert script.status == 200
        escape = yarl.URL(f"{url}/consoles/novnc/%2E%2E/secret", encoded=True)
        async with http.get(escape) as outside:
            assert outside.status != 200 and "not for you" not in await outside.text()
        async with http.get(f"{url}/consoles/novnc/{'x' * 5000}") as too_long:
            assert too_long.status == 404
