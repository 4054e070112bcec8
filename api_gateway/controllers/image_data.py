"""An image's data through the image service API (Glance v2): ``PUT
/image/v2/images/{id}/file`` uploads it (streamed: never held in memory), ``GET`` downloads
it (streamed, with ``Content-MD5`` and single byte ranges, as Glance serves it). Compute
agents reach the same data with signed URLs instead (controllers/host_data.py).
"""

from __future__ import annotations

import re

from aiohttp import web

from api_gateway import keys
from api_gateway.auth import token_required
from api_gateway.compute import image_uploads as domain
from api_gateway.http.faults import BadMediaType, BadRequest, RangeNotSatisfiable
from shared.image_data import ImageData

routes = web.RouteTableDef()

#: how much of an upload is taken from the connection at a time
CHUNK = 1 << 16
OCTET_STREAM = "application/octet-stream"
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@routes.put("/image/v2/images/{image_id}/file")
@token_required
async def upload(request: web.Request) -> web.Response:
    """204 once the data is stored whole and the image ``active``."""
    if request.content_type != OCTET_STREAM:
        raise BadMediaType(
            f"Unsupported Content-Type {request.content_type!r}: image data is {OCTET_STREAM}."
        )
    await domain.upload(
        request.app[keys.POOL],
        request.app[keys.SETTINGS],
        request.app[keys.IMAGE_DATA],
        keys.context(request),
        request.match_info["image_id"],
        request.content.iter_chunked(CHUNK),
        request.content_length,
    )
    return web.Response(status=204)


@routes.get("/image/v2/images/{image_id}/file")
@token_required
async def download(request: web.Request) -> web.StreamResponse:
    """200 with the data, 206 with a range of it; 204 for an image with no data yet."""
    store = request.app[keys.IMAGE_DATA]
    data = await domain.download(
        request.app[keys.POOL], store, keys.context(request), request.match_info["image_id"]
    )
    return await send(request, store, data)


async def send(
    request: web.Request, store: ImageData, data: domain.Download | None
) -> web.StreamResponse:
    if data is None:
        return web.Response(status=204)
    start, end = _range(request.headers.get("Range"), data.size)
    response = web.StreamResponse(status=200 if (start, end) == (0, data.size) else 206)
    response.content_type = OCTET_STREAM
    response.content_length = end - start
    response.headers["Accept-Ranges"] = "bytes"
    if response.status == 206:
        response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{data.size}"
    elif data.checksum is not None:
        response.headers["Content-MD5"] = data.checksum
    await response.prepare(request)
    async for chunk in store.read(data.location, start, end):
        await response.write(chunk)
    await response.write_eof()
    return response


def _range(header: str | None, size: int) -> tuple[int, int]:
    """[start, end) of one byte range (RFC 9110): the whole data without a header; 416 for
    a range that lies outside it; 400 for several ranges or a header that does not parse."""
    if header is None:
        return 0, size
    match = _RANGE.match(header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        raise BadRequest(f"Invalid Range header {header!r}: one range of bytes is served.")
    first, last = match.group(1), match.group(2)
    if first == "":  # the last N bytes
        start, end = max(0, size - int(last)), size
    else:
        start = int(first)
        end = size if last == "" else min(int(last) + 1, size)
    if start >= size or start >= end:
        raise RangeNotSatisfiable(
            f"Requested range not satisfiable: {header}",
            headers={"Content-Range": f"bytes */{size}"},
        )
    return start, end
