"""Metadata of servers and images: the same six operations for both (guide 2.6–2.6.6).

``/{servers|images}/{id}/metadata``: GET the set, PUT to replace it, POST to merge into it;
``/{servers|images}/{id}/metadata/{key}``: GET, PUT or DELETE one item. Who may write a
server's is the policy's (``servers:metadata``); in which states, and who may write an
image's, the domain layer's (api_gateway/compute/api.py, api_gateway/compute/images.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from api_gateway import keys
from api_gateway.auth.policy import authorize
from api_gateway.compute import images
from api_gateway.compute.metadata import DeleteItem, Merge, MetadataEdit, ReplaceAll, SetItem
from api_gateway.http.bodies import read_body
from api_gateway.http.responses import render
from api_gateway.http.routing import collection, member
from api_gateway.schemas.common import validate
from api_gateway.schemas.metadata import MetadataBody, MetaItemBody
from shared.errors import NotFound

routes = web.RouteTableDef()

Reader = Callable[[web.Request, str], Awaitable[dict[str, str]]]
Editor = Callable[[web.Request, str, MetadataEdit], Awaitable[dict[str, str]]]


@dataclass(frozen=True)
class Owner:
    """A kind of resource that has metadata, and how to read and change it."""

    path: str
    id_param: str
    read: Reader
    edit: Editor


async def _read_server(request: web.Request, server_id: str) -> dict[str, str]:
    return await keys.compute(request).server_metadata(keys.context(request), server_id)


async def _edit_server(request: web.Request, server_id: str, edit: MetadataEdit) -> dict[str, str]:
    authorize(request, "servers:metadata")
    return await keys.compute(request).edit_server_metadata(keys.context(request), server_id, edit)


async def _read_image(request: web.Request, image_id: str) -> dict[str, str]:
    return await images.image_metadata(request.app[keys.POOL], keys.context(request), image_id)


async def _edit_image(request: web.Request, image_id: str, edit: MetadataEdit) -> dict[str, str]:
    return await images.edit_image_metadata(
        request.app[keys.POOL], request.app[keys.SETTINGS], keys.context(request), image_id, edit
    )


SERVERS = Owner("/servers/{server_id}", "server_id", _read_server, _edit_server)
IMAGES = Owner("/images/{image_id}", "image_id", _read_image, _edit_image)


def _register(owner: Owner) -> None:
    whole = collection(f"{owner.path}/metadata")
    one = member(f"{owner.path}/metadata/{{key}}")

    def owner_id(request: web.Request) -> str:
        return request.match_info[owner.id_param]

    async def list_metadata(request: web.Request) -> web.Response:
        return render(request, {"metadata": await owner.read(request, owner_id(request))})

    async def set_metadata(request: web.Request) -> web.Response:
        body = validate(MetadataBody, await read_body(request))
        new = await owner.edit(request, owner_id(request), ReplaceAll(body.metadata))
        return render(request, {"metadata": new})

    async def update_metadata(request: web.Request) -> web.Response:
        body = validate(MetadataBody, await read_body(request))
        new = await owner.edit(request, owner_id(request), Merge(body.metadata))
        return render(request, {"metadata": new})

    async def show_item(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        metadata = await owner.read(request, owner_id(request))
        if key not in metadata:
            raise NotFound("Metadata item was not found")
        return render(request, {"meta": {key: metadata[key]}})

    async def set_item(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        value = validate(MetaItemBody, await read_body(request)).value_for(key)
        await owner.edit(request, owner_id(request), SetItem(key, value))
        return render(request, {"meta": {key: value}})

    async def delete_item(request: web.Request) -> web.Response:
        await owner.edit(request, owner_id(request), DeleteItem(request.match_info["key"]))
        return web.Response(status=204)

    async def delete_blank_key(request: web.Request) -> web.Response:
        """``DELETE .../metadata/``: an item with an empty key, which none has (404, as
        nova answered, rather than 405 for the whole metadata)."""
        raise NotFound("Metadata item was not found")

    routes.get(whole)(list_metadata)
    routes.put(whole)(set_metadata)
    routes.post(whole)(update_metadata)
    routes.get(one)(show_item)
    routes.put(one)(set_item)
    routes.delete(one)(delete_item)
    routes.delete(member(f"{owner.path}/metadata/"))(delete_blank_key)


_register(SERVERS)
_register(IMAGES)
