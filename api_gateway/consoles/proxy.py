"""The console proxy: a WebSocket that opens a console URL's display and relays it.

It speaks websockify's protocol, which noVNC and spice-html5 (and any websockify client)
use: the client upgrades to a WebSocket (subprotocol ``binary`` when it asks for one) and
every binary frame carries the display protocol's bytes (RFB for VNC, SPICE's) as they are;
the proxy connects to the guest's display over TCP and copies bytes both ways until either
side closes. Text frames (websockify's old ``base64`` subprotocol) are not spoken.

The token (``?token=``, or the ``token`` cookie older noVNC pages set) is the only
credential, as in nova: unknown or expired, or its server deleted or no longer active, the
upgrade is refused with 401 and nothing is connected. A session outlives its token: the
token only opens it (nova's rule), so a console left open keeps working.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import WSMsgType, web

from api_gateway import keys
from api_gateway.consoles.types import PREFIX
from api_gateway.http.faults import BadRequest, Unauthorized
from shared import errors
from shared.db import console_tokens
from shared.db.console_tokens import ConsoleTarget

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

#: websockify's subprotocol for raw binary frames
SUBPROTOCOL = "binary"
#: how long the display may take to accept the proxy's connection
CONNECT_TIMEOUT_S = 5.0
#: the most read from the display for one frame
CHUNK = 64 * 1024


@routes.get(f"{PREFIX}/novnc/websockify")
@routes.get(f"{PREFIX}/spice/websockify")
@routes.get(f"{PREFIX}/xvpvnc/console")
async def relay(request: web.Request) -> web.StreamResponse:
    """Check the token, connect to the display, then relay until either side closes."""
    ws = web.WebSocketResponse(protocols=(SUBPROTOCOL,), max_msg_size=CHUNK * 16)
    if not ws.can_prepare(request).ok:
        raise BadRequest("A console is opened with a WebSocket upgrade (websockify's protocol).")
    target = await _target(request)
    reader, writer = await _connect(target)
    log.info("console of server %s opened (%s)", target.server_id, target.console_type)
    try:
        await ws.prepare(request)
        await splice(ws, reader, writer)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        await ws.close()
        log.info("console of server %s closed", target.server_id)
    return ws


async def _target(request: web.Request) -> ConsoleTarget:
    token = request.query.get("token") or request.cookies.get("token")
    target = None
    if token:
        target = await console_tokens.find(request.app[keys.POOL], token)
    if target is None:
        raise Unauthorized("The console token is unknown or has expired.")
    return target


async def _connect(target: ConsoleTarget) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            return await asyncio.open_connection(target.host, target.port)
    except (OSError, TimeoutError) as exc:
        log.warning("cannot reach the console of server %s: %r", target.server_id, exc)
        raise errors.ServiceUnavailable(
            "The server's console cannot be reached now; try again later."
        ) from exc


async def splice(
    ws: web.WebSocketResponse, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Copy bytes between the WebSocket and the display until one of them is done."""
    tasks = {
        asyncio.create_task(_to_display(ws, writer)),
        asyncio.create_task(_to_client(reader, ws)),
    }
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, Exception):
            log.debug("console relay ended: %r", result)


async def _to_display(ws: web.WebSocketResponse, writer: asyncio.StreamWriter) -> None:
    async for message in ws:
        if message.type is WSMsgType.BINARY:
            writer.write(message.data)
            await writer.drain()
        elif message.type is WSMsgType.TEXT:
            await ws.close(code=1003, message=b"binary frames only (websockify's binary)")
            return


async def _to_client(reader: asyncio.StreamReader, ws: web.WebSocketResponse) -> None:
    while chunk := await reader.read(CHUNK):
        await ws.send_bytes(chunk)
