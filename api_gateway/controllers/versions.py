"""``GET /`` and ``GET /v2/`` (API.md §10.4–10.5); no token needed."""

from __future__ import annotations

from aiohttp import web

from api_gateway.responses import render
from api_gateway.views import versions
from api_gateway.views.links import base_url

routes = web.RouteTableDef()


@routes.get("/")
async def list_versions(request: web.Request) -> web.Response:
    return render(versions.version_list(base_url(request)))


@routes.get("/v2")
@routes.get("/v2/")
async def show_version(request: web.Request) -> web.Response:
    return render(versions.version_detail(base_url(request)))
