"""Flavors: list, detail, show (guide 2.4.1–2.4.2)."""

from __future__ import annotations

from aiohttp import web

from api_gateway import keys
from api_gateway.http.faults import BadRequest, ItemNotFound
from api_gateway.http.responses import render
from api_gateway.http.routing import collection, member
from api_gateway.schemas.common import page_params
from api_gateway.schemas.filters import integer
from api_gateway.views import flavors as view
from api_gateway.views.links import base_url, split_page
from shared.db import flavors

routes = web.RouteTableDef()


async def _page(request: web.Request, detailed: bool) -> web.Response:
    ctx = keys.context(request)
    settings = request.app[keys.SETTINGS]
    limit, marker = page_params(request, settings.max_page_size, zero_means_max=True)
    pool = request.app[keys.POOL]
    if marker is not None and not await flavors.exists(pool, marker):
        raise BadRequest(f"marker [{marker}] not found")
    rows = await flavors.list_page(
        pool,
        # bounded to the columns' range: PostgreSQL refuses to compare an integer column
        # with a number beyond it, so ?minRam=99999999999 was a 500
        min_ram_mb=integer(request.query, "minRam"),
        min_disk_gb=integer(request.query, "minDisk"),
        marker=marker,
        limit=limit + 1,
    )
    rows, links = split_page(request, rows, limit)
    base = base_url(request)
    build = view.detail if detailed else view.basic
    body: dict[str, object] = {"flavors": [build(r, base, ctx.project_id) for r in rows]}
    if links:
        body["flavors_links"] = links
    return render(request, body)


@routes.get(collection("/flavors"))
async def index(request: web.Request) -> web.Response:
    return await _page(request, detailed=False)


@routes.get(collection("/flavors/detail"))
async def detail(request: web.Request) -> web.Response:
    return await _page(request, detailed=True)


@routes.get(member("/flavors/{flavor_id}"))
async def show(request: web.Request) -> web.Response:
    ctx = keys.context(request)
    row = await flavors.get(request.app[keys.POOL], request.match_info["flavor_id"])
    if row is None:
        raise ItemNotFound("The resource could not be found.")
    return render(request, {"flavor": view.detail(row, base_url(request), ctx.project_id)})
