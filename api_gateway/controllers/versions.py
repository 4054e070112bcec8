"""``GET /`` and ``GET /v2/`` in JSON, XML and Atom (guide 1.7–1.7), and the 300
Multiple Choices document for requests that name no version (guide 1.7). No token needed."""

from __future__ import annotations

from aiohttp import web

from api_gateway.http.negotiation import CONTENT_TYPES, Format, response_format
from api_gateway.http.responses import render
from api_gateway.http.serializers import atom
from api_gateway.views import versions
from api_gateway.views.links import base_url

routes = web.RouteTableDef()


@routes.get("/")
async def list_versions(request: web.Request) -> web.Response:
    base = base_url(request)
    body = versions.version_list(base)
    if response_format(request, allow_atom=True) is Format.ATOM:
        return _atom(atom.feed("Available API Versions", f"{base}/", body["versions"]))
    return render(request, body, xml_body=versions.for_xml(body))


@routes.get("/v2{_slash:/?}{_fmt:(?:\\.(?:json|xml|atom))?}")
async def show_version(request: web.Request) -> web.Response:
    base = base_url(request)
    body = versions.version_detail(base)
    if response_format(request, allow_atom=True) is Format.ATOM:
        return _atom(atom.feed("About This Version", f"{base}/v2/", [body["version"]]))
    return render(request, body, xml_body=versions.for_xml(body))


def _atom(document: bytes) -> web.Response:
    return web.Response(body=document, content_type=CONTENT_TYPES[Format.ATOM])


def multiple_choices(request: web.Request) -> web.Response:
    """300 with the versions that could serve the requested path."""
    body = versions.choices(base_url(request), request.path_qs)
    return render(request, body, status=300)
