"""A server's audit trail: nova's ``os-instance-actions`` extension.

``GET /servers/{id}/os-instance-actions`` lists every action recorded for the server, newest
first (``{"instanceActions": [...]}``); ``GET .../os-instance-actions/{request_id}`` shows the
one a request started (``{"instanceAction": {...}}``, with its ``events`` for administrators).
The request id is the ``X-Compute-Request-Id`` the action's response carried. The server's
owner or an administrator may look (policy ``os-instance-actions``); 404 for an unknown
server or request.
"""

from __future__ import annotations

import uuid

from aiohttp import web

from api_gateway import keys
from api_gateway.auth.policy import authorize, permitted
from api_gateway.http.responses import render
from api_gateway.http.routing import collection, member
from api_gateway.views import instance_actions as view
from shared.db import actions
from shared.errors import NotFound

routes = web.RouteTableDef()


async def _server_id(request: web.Request) -> uuid.UUID:
    """The server the path names, once the caller may see its actions."""
    authorize(request, "os-instance-actions")
    row = await keys.compute(request).get_server(
        keys.context(request), request.match_info["server_id"]
    )
    return row.id


@routes.get(collection("/servers/{server_id}/os-instance-actions"))
async def index(request: web.Request) -> web.Response:
    rows = await actions.list_for_server(request.app[keys.POOL], await _server_id(request))
    return render(request, {"instanceActions": [view.action(row) for row in rows]})


@routes.get(member("/servers/{server_id}/os-instance-actions/{request_id}"))
async def show(request: web.Request) -> web.Response:
    server_id = await _server_id(request)
    request_id = request.match_info["request_id"]
    row = await actions.get_by_request(request.app[keys.POOL], server_id, request_id)
    if row is None:
        raise NotFound(f"Action {request_id} could not be found.")
    body = view.action(row)
    if permitted(request, "os-instance-actions:events"):
        body["events"] = view.events(row)
    return render(request, {"instanceAction": body})
