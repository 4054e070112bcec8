"""The image service API (Glance v2) under ``/image``, on our own images.

Clients resolve an image name or id through the catalog's ``image`` endpoint, never through
the compute API's ``/images`` (novaclient, openstacksdk and the ``openstack`` CLI all do), so
the gateway serves what they use: discovery (``GET /image/``, no token), ``GET
/image/v2/images`` (``name``, ``status``, ``limit``, ``marker``; other filters are ignored),
``GET``, ``PATCH`` (JSON Patch) and ``DELETE /image/v2/images/{id}``, ``POST
/image/v2/images`` (a ``queued`` image, whose data ``controllers/image_data.py`` takes),
``GET /image/v2/images/{id}/tasks`` and the JSON schemas of ``/image/v2/schemas/``. The
catalog's image endpoint is then ``http://HOST:PORT/image``. A project sees the public images
and its own, as in the compute API, and changes its own. Answers are JSON, as the image
service's are; errors are v2 faults.
"""

from __future__ import annotations

import json
import uuid
from urllib.parse import urlencode

import asyncpg
from aiohttp import web

from api_gateway import keys
from api_gateway.auth import token_required
from api_gateway.compute import image_uploads
from api_gateway.compute import images as domain
from api_gateway.http.bodies import read_body
from api_gateway.http.faults import BadMediaType, BadRequest
from api_gateway.schemas import image_service as schemas
from api_gateway.schemas.filters import text
from api_gateway.views import image_service as view
from api_gateway.views.links import base_url
from shared.db import images
from shared.db.images import ImageFilters
from shared.db.records import Image

routes = web.RouteTableDef()

#: Glance's default page size (``limit_param_default``).
DEFAULT_LIMIT = 25

#: Statuses an image can be listed by (deleted ones are never listed).
_STATUSES = frozenset({"queued", "saving", "active", "killed"})


@routes.get("/image{_slash:/?}")
@routes.get("/image/versions")
async def versions(request: web.Request) -> web.Response:
    return web.json_response(view.versions(base_url(request)))


@routes.get("/image/v2/images")
@token_required
async def index(request: web.Request) -> web.Response:
    ctx = keys.context(request)
    limit = _limit(request)
    marker = request.query.get("marker")
    pool = request.app[keys.POOL]
    rows = await domain.list_images(
        pool, ctx, limit=limit + 1, marker=marker, filters=_filters(request)
    )
    page, more = rows[:limit], len(rows) > limit
    shown = await _shown(pool, page)
    following = None
    if more and page:
        params = {k: v for k, v in request.query.items() if k != "marker"}
        following = urlencode({**params, "marker": str(page[-1].id)})
    return web.json_response(view.page(shown, following))


@routes.get("/image/v2/images/{image_id}")
@token_required
async def show(request: web.Request) -> web.Response:
    ctx = keys.context(request)
    pool = request.app[keys.POOL]
    row = await domain.get_image(pool, ctx, request.match_info["image_id"])
    (shown,) = await _shown(pool, [row])
    return web.json_response(shown)


@routes.post("/image/v2/images")
@token_required
async def create(request: web.Request) -> web.Response:
    """201 with the new ``queued`` image and its ``Location``."""
    if request.content_type != "application/json":
        raise BadMediaType(f"Unsupported Content-Type {request.content_type!r}: JSON only.")
    ctx = keys.context(request)
    new = schemas.new_image(await read_body(request))
    pool = request.app[keys.POOL]
    row = await image_uploads.create_image(pool, request.app[keys.SETTINGS], ctx, new)
    (shown,) = await _shown(pool, [row])
    return web.json_response(
        shown, status=201, headers={"Location": f"{base_url(request)}/image/v2/images/{row.id}"}
    )


@routes.patch("/image/v2/images/{image_id}")
@token_required
async def update(request: web.Request) -> web.Response:
    """200 with the image after every operation of the patch (all or none)."""
    if request.content_type not in schemas.PATCH_MEDIA_TYPES:
        raise BadMediaType(
            f"Unsupported Content-Type {request.content_type!r}: a patch is "
            f"{schemas.PATCH_MEDIA_TYPES[0]}."
        )
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("Malformed request body.") from None
    ops = schemas.patch(body)
    pool = request.app[keys.POOL]
    row = await image_uploads.patch_image(
        pool, request.app[keys.SETTINGS], keys.context(request), request.match_info["image_id"], ops
    )
    (shown,) = await _shown(pool, [row])
    return web.json_response(shown)


@routes.get("/image/v2/images/{image_id}/tasks")
@token_required
async def tasks(request: web.Request) -> web.Response:
    """The image's import tasks (Glance 2.12): none, as data only comes by upload here."""
    await domain.get_image(
        request.app[keys.POOL], keys.context(request), request.match_info["image_id"]
    )
    return web.json_response({"tasks": []})


@routes.get("/image/v2/schemas/image")
async def image_schema(request: web.Request) -> web.Response:
    return web.json_response(view.image_schema())


@routes.get("/image/v2/schemas/images")
async def images_schema(request: web.Request) -> web.Response:
    return web.json_response(view.images_schema())


@routes.delete("/image/v2/images/{image_id}")
@token_required
async def delete(request: web.Request) -> web.Response:
    """204; the owner's (or an administrator's) only, as the compute API's image delete
    (``openstack image delete`` of a snapshot)."""
    ctx = keys.context(request)
    await domain.delete_image(request.app[keys.POOL], ctx, request.match_info["image_id"])
    return web.Response(status=204)


async def _shown(pool: asyncpg.Pool, rows: list[Image]) -> list[dict[str, object]]:
    ids: list[uuid.UUID] = [row.id for row in rows]
    sharing = await images.sharing(pool, ids)
    return [view.image(row, sharing[row.id]) for row in rows]


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit")
    most = request.app[keys.SETTINGS].max_page_size
    if raw is None:
        return min(DEFAULT_LIMIT, most)
    try:
        limit = int(raw)
    except ValueError:
        raise BadRequest("limit param must be an integer") from None
    if limit < 0:
        raise BadRequest("limit param must be positive")
    return min(limit, most)


def _filters(request: web.Request) -> ImageFilters:
    status = text(request.query, "status")
    if status is not None and status not in _STATUSES:
        raise BadRequest(f"Invalid status value: {status}")
    return ImageFilters(
        name=text(request.query, "name"),
        status_in=frozenset({status}) if status is not None else None,
    )
