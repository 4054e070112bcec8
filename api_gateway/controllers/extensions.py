"""``GET /extensions`` and ``GET /extensions/{alias}`` (guide 1.8–1.8)."""

from __future__ import annotations

from aiohttp import web

from api_gateway.http.faults import ItemNotFound
from api_gateway.http.responses import render
from api_gateway.http.routing import collection, member
from api_gateway.views import extensions as view

routes = web.RouteTableDef()


@routes.get(collection("/extensions"))
async def index(request: web.Request) -> web.Response:
    return render(request, {"extensions": [view.extension(e) for e in view.all_extensions()]})


@routes.get(member("/extensions/{alias}"))
async def show(request: web.Request) -> web.Response:
    """One extension; 404 for an alias not available here (the guide's availability test)."""
    extension = view.find(request.match_info["alias"])
    if extension is None:
        raise ItemNotFound("The resource could not be found.")
    return render(request, {"extension": view.extension(extension)})
