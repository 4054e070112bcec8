"""Images: list, detail, show (API.md §15.18–15.19)."""

from __future__ import annotations

import uuid

from aiohttp import web

from api_gateway import keys
from api_gateway.faults import BadRequest, ItemNotFound
from api_gateway.responses import render
from api_gateway.routing import collection, member
from api_gateway.schemas.common import page_params
from api_gateway.views import images as view
from api_gateway.views.links import base_url, collection_links
from shared.db import images

routes = web.RouteTableDef()


async def _page(request: web.Request, detailed: bool) -> web.Response:
    ctx = keys.context(request)
    pool = request.app[keys.POOL]
    limit, asked, marker = page_params(request, request.app[keys.SETTINGS].max_page_size)
    marker_id = None
    if marker is not None:
        try:
            marker_id = uuid.UUID(marker)
        except ValueError:
            raise BadRequest(f"marker [{marker}] not found") from None
        if not await images.is_visible(pool, marker_id, ctx.project_id):
            raise BadRequest(f"marker [{marker}] not found")
    rows = await images.list_page(pool, ctx.project_id, marker=marker_id, limit=limit)
    base = base_url(request)
    build = view.detail if detailed else view.basic
    body: dict[str, object] = {"images": [build(r, base, ctx.project_id) for r in rows]}
    links = collection_links(request, rows, asked)
    if links:
        body["images_links"] = links
    return render(request, body)


@routes.get(collection("/images"))
async def index(request: web.Request) -> web.Response:
    return await _page(request, detailed=False)


@routes.get(collection("/images/detail"))
async def detail(request: web.Request) -> web.Response:
    return await _page(request, detailed=True)


@routes.get(member("/images/{image_id}"))
async def show(request: web.Request) -> web.Response:
    ctx = keys.context(request)
    try:
        image_id = uuid.UUID(request.match_info["image_id"])
    except ValueError:
        raise ItemNotFound("Image not found.") from None
    row = await images.get(request.app[keys.POOL], image_id, ctx.project_id)
    if row is None:
        raise ItemNotFound("Image not found.")
    return render(request, {"image": view.detail(row, base_url(request), ctx.project_id)})
