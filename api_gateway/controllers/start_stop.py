"""``POST /servers/{id}/action`` with ``os-stop`` or ``os-start`` (nova's
os-server-start-stop extension): 202 without a body. Who may is the dispatcher's check
(api_gateway/policy.py: the owner's, refused on a locked server to all but administrators)."""

from __future__ import annotations

from aiohttp import web

from api_gateway import keys
from api_gateway.controllers.server_actions import ActionCall, action
from api_gateway.start_stop import StartStop

#: No routes of its own: the application lists this module with the controllers, which
#: imports it and so registers its actions.
routes = web.RouteTableDef()


@action("os-stop")
async def stop(call: ActionCall) -> web.StreamResponse:
    await StartStop(keys.compute(call.request)).stop(call.ctx, call.server_id)
    return web.Response(status=202)


@action("os-start")
async def start(call: ActionCall) -> web.StreamResponse:
    await StartStop(keys.compute(call.request)).start(call.ctx, call.server_id)
    return web.Response(status=202)
