"""What compute agents reach the image store through, with URLs signed by the message key
instead of a user's token (shared/image_urls.py): so that no host needs the store itself.

* ``GET /image/internal/images/{id}/file``: the data of any live image (the image a server
  of the host boots from);
* ``PUT`` on the same: the data of an image a host is saving (createImage, createBackup);
  the answer says where it went and what it is, for the host's report;
* ``PUT``, ``GET``, ``DELETE /image/internal/transfers/{server id}``: a resized server's
  disk on its way from the host it leaves to the host it goes to;
* ``GET /image/internal/files/{name}``: a file of the store an image's metadata names (the
  kernel and initrd of an image that boots one directly).

Any other URL, an altered or expired one, or one signed for another method: 403.
"""

from __future__ import annotations

import uuid

from aiohttp import web

from api_gateway import keys
from api_gateway.compute import image_uploads as domain
from api_gateway.controllers.image_data import CHUNK, OCTET_STREAM, send
from api_gateway.http.faults import BadMediaType, Forbidden, ItemNotFound
from shared.image_data import ImageData
from shared.image_urls import PATH, HostResource, is_signed

routes = web.RouteTableDef()


def _signed(request: web.Request, resource: HostResource, key: str) -> None:
    query = request.query
    if not is_signed(
        request.app[keys.KEYRING],
        request.method,
        resource,
        key,
        query.get("expires", ""),
        query.get("signature", ""),
    ):
        raise Forbidden("This URL is not signed for this, or no longer good.")


def _id(request: web.Request, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info[name])
    except ValueError:
        raise Forbidden("This URL is not signed for this.") from None


def _octets(request: web.Request) -> None:
    if request.content_type != OCTET_STREAM:
        raise BadMediaType(f"Unsupported Content-Type {request.content_type!r}.")


def _store(request: web.Request) -> ImageData:
    return request.app[keys.IMAGE_DATA]


# --- images --------------------------------------------------------------------------------


@routes.get(PATH)
async def image_for_host(request: web.Request) -> web.StreamResponse:
    image_id = _id(request, "image_id")
    _signed(request, HostResource.IMAGE, str(image_id))
    data = await domain.download_for_host(request.app[keys.POOL], _store(request), image_id)
    return await send(request, _store(request), data)


@routes.put(PATH)
async def image_from_host(request: web.Request) -> web.Response:
    image_id = _id(request, "image_id")
    _signed(request, HostResource.IMAGE, str(image_id))
    _octets(request)
    saved = await domain.store_for_host(
        request.app[keys.POOL], _store(request), image_id, request.content.iter_chunked(CHUNK)
    )
    return web.json_response(
        {
            "location": saved.location,
            "size": saved.size,
            "checksum": saved.checksum,
            "os_hash_algo": saved.os_hash_algo,
            "os_hash_value": saved.os_hash_value,
        }
    )


# --- a resized server's disk between hosts -------------------------------------------------

_TRANSFER = HostResource.TRANSFER.replace("{key}", "{server_id}")


def _transfer(request: web.Request) -> str:
    """The store location of the server's disk in transit (after checking the URL)."""
    server_id = _id(request, "server_id")
    _signed(request, HostResource.TRANSFER, str(server_id))
    return f"transfer-{server_id}"


@routes.put(_TRANSFER)
async def transfer_in(request: web.Request) -> web.Response:
    location = _transfer(request)
    _octets(request)
    await _store(request).save(location, request.content.iter_chunked(CHUNK))
    return web.Response(status=204)


@routes.get(_TRANSFER)
async def transfer_out(request: web.Request) -> web.StreamResponse:
    location = _transfer(request)
    size = await _store(request).size(location)
    if size is None:
        raise ItemNotFound("No disk is on its way for this server.")
    return await send(request, _store(request), domain.Download(location, size, None))


@routes.delete(_TRANSFER)
async def transfer_done(request: web.Request) -> web.Response:
    await _store(request).delete(_transfer(request))
    return web.Response(status=204)


# --- files images name ---------------------------------------------------------------------


@routes.get(HostResource.FILE.replace("{key}", "{name}"))
async def file_for_host(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    _signed(request, HostResource.FILE, name)
    store = _store(request)
    try:
        size = await store.size(name)
    except ValueError:  # not a file of the store (a path out of it, a hidden file)
        raise ItemNotFound(f"No file {name!r} in the image store.") from None
    if size is None:
        raise ItemNotFound(f"No file {name!r} in the image store.")
    return await send(request, store, domain.Download(name, size, None))
