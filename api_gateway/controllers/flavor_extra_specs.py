"""Flavor extra specs (nova's os-flavor-extra-specs): ``/flavors/{id}/os-extra_specs``.

Everyone may read them (``nova flavor-show`` does, for every flavor it shows); only an
administrator may set or remove them (``os-flavor-extra-specs:write``). 404 for a flavor that
does not exist, and for a key the flavor does not have. XML answers are nova's, with keys that
are no element names carried in an attribute (``views/flavor_extra_specs.py``).
"""

from __future__ import annotations

from aiohttp import web

from api_gateway import keys
from api_gateway.auth.policy import authorize
from api_gateway.http.bodies import read_body
from api_gateway.http.faults import BadRequest, ItemNotFound
from api_gateway.http.negotiation import CONTENT_TYPES, Format, response_format
from api_gateway.http.responses import render
from api_gateway.http.routing import collection, member
from api_gateway.schemas.common import validate
from api_gateway.schemas.extra_specs import ExtraSpecItem, ExtraSpecsBody
from api_gateway.views import flavor_extra_specs as view
from shared.db import flavor_extra_specs as specs
from shared.db import flavors

routes = web.RouteTableDef()

_SPECS = "/flavors/{flavor_id}/os-extra_specs"
_SPEC = "/flavors/{flavor_id}/os-extra_specs/{key}"


async def _flavor_id(request: web.Request) -> str:
    """The URL's flavor, which must exist (404)."""
    flavor_id = request.match_info["flavor_id"]
    if not await flavors.exists(request.app[keys.POOL], flavor_id):
        raise ItemNotFound(f"Flavor {flavor_id} could not be found.")
    return flavor_id


def _specs(request: web.Request, specs: dict[str, str]) -> web.Response:
    """``{"extra_specs": specs}``; in XML nova's form, which the mechanical mapping (keys as
    attributes) does not give and could not give for keys that are no XML names."""
    if response_format(request) is Format.XML:
        return web.Response(body=view.specs_xml(specs), content_type=CONTENT_TYPES[Format.XML])
    return render(request, {"extra_specs": specs})


def _spec(request: web.Request, key: str, value: str) -> web.Response:
    """``{key: value}``; in XML ``<extra_spec key=…>``, since the key may be no element name."""
    if response_format(request) is Format.XML:
        return web.Response(body=view.spec_xml(key, value), content_type=CONTENT_TYPES[Format.XML])
    return render(request, {key: value})


@routes.get(collection(_SPECS))
async def index(request: web.Request) -> web.Response:
    flavor_id = await _flavor_id(request)
    return _specs(request, await specs.read(request.app[keys.POOL], flavor_id))


@routes.get(member(_SPEC))
async def show(request: web.Request) -> web.Response:
    flavor_id = await _flavor_id(request)
    key = request.match_info["key"]
    value = (await specs.read(request.app[keys.POOL], flavor_id)).get(key)
    if value is None:
        raise ItemNotFound(f"Flavor {flavor_id} has no extra specs with key {key}.")
    return _spec(request, key, value)


@routes.post(collection(_SPECS))
async def create(request: web.Request) -> web.Response:
    """Set the body's keys; answers with them."""
    authorize(request, "os-flavor-extra-specs:write")
    body = validate(ExtraSpecsBody, await read_body(request))
    flavor_id = await _flavor_id(request)
    await specs.upsert(request.app[keys.POOL], flavor_id, body.extra_specs)
    return _specs(request, body.extra_specs)


@routes.put(member(_SPEC))
async def update(request: web.Request) -> web.Response:
    """Set one key: the body is ``{key: value}`` for the URL's key and nothing else."""
    authorize(request, "os-flavor-extra-specs:write")
    key = request.match_info["key"]
    item = validate(ExtraSpecItem, {"item": await read_body(request)}).item
    if list(item) != [key]:
        raise BadRequest("The body must hold exactly the key named in the URL.")
    flavor_id = await _flavor_id(request)
    await specs.upsert(request.app[keys.POOL], flavor_id, item)
    return _spec(request, key, item[key])


@routes.delete(member(_SPEC))
async def delete(request: web.Request) -> web.Response:
    authorize(request, "os-flavor-extra-specs:write")
    flavor_id = await _flavor_id(request)
    key = request.match_info["key"]
    if not await specs.delete(request.app[keys.POOL], flavor_id, key):
        raise ItemNotFound(f"Flavor {flavor_id} has no extra specs with key {key}.")
    return web.Response(status=200)
