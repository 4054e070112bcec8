"""Turn a view's dict into an HTTP response in the negotiated format (JSON or XML)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pydantic_core
from aiohttp import web

from api_gateway.http.negotiation import CONTENT_TYPES, Format, response_format
from api_gateway.http.serializers import xml


def serialize(fmt: Format, body: Mapping[str, Any]) -> bytes:
    if fmt is Format.XML:
        return xml.document(body)
    return pydantic_core.to_json(body)


def render(
    request: web.Request,
    body: Mapping[str, Any] | None,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    xml_body: Mapping[str, Any] | None = None,
) -> web.Response:
    """``body`` in the format the client asked for (no body for 204 and friends).

    ``xml_body`` replaces ``body`` for XML where the two representations differ beyond the
    mechanical mapping (the guide's samples show a few such places).
    """
    if body is None:
        return web.Response(status=status, headers=headers)
    fmt = response_format(request)
    if fmt is Format.ATOM:
        fmt = Format.JSON
    chosen = xml_body if (fmt is Format.XML and xml_body is not None) else body
    return web.Response(
        body=serialize(fmt, chosen),
        status=status,
        content_type=CONTENT_TYPES[fmt],
        headers=headers,
    )


def render_item(fmt: Format, tag: str, value: Mapping[str, Any]) -> bytes:
    """One member of a collection, serialized to be joined by ``render_collection``."""
    if fmt is Format.XML:
        return xml.item(tag, value).encode()
    return pydantic_core.to_json(value)


def collection_body(
    fmt: Format, name: str, items: list[bytes], links: list[dict[str, str]]
) -> bytes:
    """``{name: [...], name_links: [...]}`` (or its XML) from members serialized by
    ``render_item``."""
    if fmt is Format.XML:
        return xml.collection(name, items, links)
    body = b"".join((b'{"', name.encode(), b'":[', b",".join(items), b"]"))
    if links:
        body += b"".join((b',"', name.encode(), b'_links":', pydantic_core.to_json(links)))
    return body + b"}"


def collection_response(fmt: Format, body: bytes) -> web.Response:
    """The response carrying a ``collection_body`` of ``fmt`` (a JSON or XML one)."""
    return web.Response(body=body, content_type=CONTENT_TYPES[fmt])


def render_collection(
    request: web.Request,
    name: str,
    items: list[bytes],
    links: list[dict[str, str]],
) -> web.Response:
    """``{name: [...], name_links: [...]}`` from members serialized by ``render_item``."""
    fmt = response_format(request)
    return collection_response(fmt, collection_body(fmt, name, items, links))
