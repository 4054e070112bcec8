"""Images: list and detail (with filters), show, delete (guide 2.5.1–2.5.3)."""

from __future__ import annotations

from aiohttp import web

from api_gateway import keys
from api_gateway.compute import images as domain
from api_gateway.http.responses import render
from api_gateway.http.routing import collection, member
from api_gateway.schemas.common import page_params
from api_gateway.schemas.filters import image_filters
from api_gateway.views import images as view
from api_gateway.views.links import base_url, split_page
from shared.errors import NotFound

routes = web.RouteTableDef()


async def _page(request: web.Request, detailed: bool) -> web.Response:
    ctx = keys.context(request)
    limit, marker = page_params(request, request.app[keys.SETTINGS].max_page_size)
    rows, links = split_page(
        request,
        await domain.list_images(
            request.app[keys.POOL],
            ctx,
            limit=limit + 1,  # one more, to know whether a next page follows
            marker=marker,
            filters=image_filters(request.query),
        ),
        limit,
    )
    base = base_url(request)
    build = view.detail if detailed else view.basic
    body: dict[str, object] = {"images": [build(r, base, ctx.project_id) for r in rows]}
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
    row = await domain.get_image(request.app[keys.POOL], ctx, request.match_info["image_id"])
    return render(request, {"image": view.detail(row, base_url(request), ctx.project_id)})


@routes.delete(member("/images/{image_id}"))
async def delete(request: web.Request) -> web.Response:
    ctx = keys.context(request)
    await domain.delete_image(request.app[keys.POOL], ctx, request.match_info["image_id"])
    return web.Response(status=204)


@routes.delete(member("/images/"))
async def delete_blank_id(request: web.Request) -> web.Response:
    """``DELETE /images/``: an image with an empty id, which no image has (404, as nova
    answered, rather than 405 for the collection)."""
    raise NotFound("Image not found.")
