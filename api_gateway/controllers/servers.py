"""Servers: create, list, detail, show, delete (API.md §15.1–15.5)."""

from __future__ import annotations

from aiohttp import web

from api_gateway import keys
from api_gateway.responses import render
from api_gateway.schemas.common import page_params, read_body, validate
from api_gateway.schemas.servers import CreateServerBody
from api_gateway.views import servers as view
from api_gateway.views.links import base_url, collection_links

routes = web.RouteTableDef()


async def _page(request: web.Request, detailed: bool) -> web.Response:
    ctx = keys.context(request)
    limit, asked, marker = page_params(request, request.app[keys.SETTINGS].max_page_size)
    rows = await keys.compute(request).list_servers(ctx, limit=limit, marker=marker)
    base = base_url(request)
    build = view.detail if detailed else view.basic
    body: dict[str, object] = {"servers": [build(r, base, ctx.project_id) for r in rows]}
    links = collection_links(request, rows, asked)
    if links:
        body["servers_links"] = links
    return render(body)


@routes.get("/v2/{tenant_id}/servers")
async def index(request: web.Request) -> web.Response:
    return await _page(request, detailed=False)


@routes.get("/v2/{tenant_id}/servers/detail")
async def detail(request: web.Request) -> web.Response:
    return await _page(request, detailed=True)


@routes.post("/v2/{tenant_id}/servers")
async def create(request: web.Request) -> web.Response:
    ctx = keys.context(request)
    body = validate(CreateServerBody, await read_body(request))
    created = await keys.compute(request).create_server(ctx, body.server)
    server = view.created(created.id, created.admin_pass, base_url(request), ctx.project_id)
    return render({"server": server}, status=202, headers={"Location": server["links"][0]["href"]})


@routes.get("/v2/{tenant_id}/servers/{server_id}")
async def show(request: web.Request) -> web.Response:
    ctx = keys.context(request)
    row = await keys.compute(request).get_server(ctx, request.match_info["server_id"])
    return render({"server": view.detail(row, base_url(request), ctx.project_id)})


@routes.delete("/v2/{tenant_id}/servers/{server_id}")
async def delete(request: web.Request) -> web.Response:
    ctx = keys.context(request)
    await keys.compute(request).delete_server(ctx, request.match_info["server_id"])
    return web.Response(status=204)
