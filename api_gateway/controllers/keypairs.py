"""Key pairs: nova's ``os-keypairs`` extension (the API and the bookkeeping; putting a key
into a guest is not done here).

``GET /os-keypairs`` lists the caller's key pairs, ``POST`` creates one (a generated RSA 2048
key pair, its private key in the answer and nowhere else) or imports a public key (an OpenSSH
``ssh-rsa``, ``ssh-ed25519`` or ``ecdsa-sha2-*`` key, else 400), ``GET /os-keypairs/{name}``
shows one and ``DELETE`` removes it (202, as nova 2013.1's v2 answered). Key pairs are the
user's, not the project's, as in nova: a user sees the same ones in every project, and
another user never sees them. 409 for a name the user has already, 404 for one the user does
not have, 413 past ``maxTotalKeypairs`` (``STRATUS_QUOTA_KEYPAIRS``). Shapes and messages are
nova 2013.1's (samples/nova-2013.1/os-keypairs), XML included.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from api_gateway import keys
from api_gateway.compute import keypairs as domain
from api_gateway.http.bodies import read_body
from api_gateway.http.faults import ItemNotFound
from api_gateway.http.negotiation import CONTENT_TYPES, Format, response_format
from api_gateway.http.responses import render
from api_gateway.http.routing import collection, member
from api_gateway.schemas.common import validate
from api_gateway.schemas.keypairs import KeypairBody
from api_gateway.views import keypairs as view
from shared.db import keypairs as db

routes = web.RouteTableDef()

_KEYPAIRS = "/os-keypairs"
_KEYPAIR = "/os-keypairs/{name}"


def _answer(request: web.Request, body: dict[str, Any], xml_document: bytes) -> web.Response:
    """``body`` as JSON, or nova's flat XML (which the mechanical mapping does not give)."""
    if response_format(request) is Format.XML:
        return web.Response(body=xml_document, content_type=CONTENT_TYPES[Format.XML])
    return render(request, body)


def _not_found() -> ItemNotFound:
    return ItemNotFound("The resource could not be found.")


@routes.get(collection(_KEYPAIRS))
async def index(request: web.Request) -> web.Response:
    rows = await db.list_for_user(request.app[keys.POOL], keys.context(request).user_id)
    items = [{"keypair": view.listed(row)} for row in rows]
    return _answer(request, {"keypairs": items}, view.keypairs_xml(items))


@routes.post(collection(_KEYPAIRS))
async def create(request: web.Request) -> web.Response:
    """Import the body's ``public_key``, or generate a key pair when there is none."""
    asked = validate(KeypairBody, await read_body(request)).keypair
    private_key = None
    if asked.public_key is not None:
        public_key = asked.public_key
        fingerprint = domain.check_public_key(public_key)
    else:
        generated = await domain.generate()
        public_key, fingerprint = generated.public_key, generated.fingerprint
        private_key = generated.private_key
    ctx = keys.context(request)
    row = await domain.create(
        request.app[keys.POOL],
        request.app[keys.SETTINGS],
        ctx.user_id,
        asked.name,
        fingerprint,
        public_key,
        project_id=ctx.project_id,
    )
    body = view.created(row, private_key)
    return _answer(request, {"keypair": body}, view.keypair_xml(body))


@routes.get(member(_KEYPAIR))
async def show(request: web.Request) -> web.Response:
    row = await db.get(
        request.app[keys.POOL], keys.context(request).user_id, request.match_info["name"]
    )
    if row is None:
        raise _not_found()
    body = view.shown(row)
    return _answer(request, {"keypair": body}, view.keypair_xml(body))


@routes.delete(member(_KEYPAIR))
async def delete(request: web.Request) -> web.Response:
    user_id = keys.context(request).user_id
    if not await db.delete(request.app[keys.POOL], user_id, request.match_info["name"]):
        raise _not_found()
    return web.Response(status=202)
