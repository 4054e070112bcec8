"""A real guest's console (nova's os-consoles): the URL the API answers leads, through the
gateway's console proxy, to the VNC server QEMU runs for the guest, which greets with its RFB
protocol version as every VNC server does."""

from __future__ import annotations

import asyncio
import re
from urllib.parse import parse_qs, urlsplit

import aiohttp

from tests.realvm.cluster import RealCluster
from tests.support.client import ComputeClient

#: what a VNC server says first (RFB 3.3, 3.7 or 3.8; QEMU says 3.8)
RFB_BANNER = re.compile(rb"RFB 003\.00[378]\n")


async def test_a_novnc_console_reaches_the_guest_s_vnc_server(
    api: ComputeClient, realvm: RealCluster, http: aiohttp.ClientSession
) -> None:
    server_id, _ = await realvm.boot(api, "console")
    reply = await api.post(f"/servers/{server_id}/action", {"os-getVNCConsole": {"type": "novnc"}})
    assert reply.status == 200, reply
    url = urlsplit(reply.body["console"]["url"])
    path = parse_qs(url.query)["path"][0]  # the WebSocket noVNC's page opens
    ws = await http.ws_connect(f"ws://{url.netloc}/{path}", protocols=("binary",))
    try:
        banner = b""
        while len(banner) < 12:
            message = await asyncio.wait_for(ws.receive(), 10)
            assert message.type is aiohttp.WSMsgType.BINARY, message
            banner += message.data
        assert RFB_BANNER.fullmatch(banner[:12]), banner
        await ws.send_bytes(banner[:12])  # the client's choice of version: the handshake goes on
        security = await asyncio.wait_for(ws.receive(), 10)
        assert security.type is aiohttp.WSMsgType.BINARY and security.data, security
    finally:
        await ws.close()
    await _spice_where_qemu_has_it(api, server_id, http)
    await realvm.delete(api, server_id)


async def _spice_where_qemu_has_it(
    api: ComputeClient, server_id: str, http: aiohttp.ClientSession
) -> None:
    """A SPICE console where this QEMU has SPICE (the proxy upgrades only once it reached the
    display: SPICE's client speaks first, so nothing is read); nova's 400 where it has not."""
    reply = await api.request(
        "POST",
        f"/servers/{server_id}/action",
        {"os-getSPICEConsole": {"type": "spice-html5"}},
        check_schema=False,
    )
    if reply.status == 400:
        assert reply.body["badRequest"]["message"] == "Unavailable console type spice-html5."
        return
    assert reply.status == 200, reply
    url = urlsplit(reply.body["console"]["url"])
    path = parse_qs(url.query)["path"][0]
    ws = await http.ws_connect(f"ws://{url.netloc}/{path}", protocols=("binary",))
    await ws.close()
