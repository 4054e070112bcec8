"""Request bodies: JSON or XML (as the JSON shape) by their ``Content-Type``, refused whole
when they could hurt what reads them (too deep, or holding what the database cannot store)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from api_gateway.http import xml_body
from api_gateway.http.faults import BadMediaType, BadRequest
from api_gateway.http.negotiation import Format, body_format

#: No v2 body nests deeper than a few levels (server > metadata > key, personality > file);
#: a deeper one is an attack on the parser or on whatever walks the result.
MAX_DEPTH = 16
_TOO_DEEP = f"The request body nests deeper than {MAX_DEPTH} levels."


async def read_body(request: web.Request) -> Any:
    """The request body (JSON or XML) as plain data in the JSON shape; 415 for a media type we
    do not speak, 400 for a body that does not parse."""
    fmt = body_format(request.content_type)
    if fmt is None:
        raise BadMediaType(f"Unsupported Content-Type {request.content_type!r}.")
    raw = await request.read()
    try:
        data = _parse(fmt, raw)
    except RecursionError as exc:  # both parsers refuse deep nesting this way, cleanly
        raise BadRequest(_TOO_DEEP) from exc
    _check_storable(data)
    return data


def _parse(fmt: Format, raw: bytes) -> Any:
    if fmt is Format.XML:
        try:
            return xml_body.parse(raw)
        except xml_body.MalformedXml as exc:
            raise BadRequest(str(exc)) from exc
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("Malformed request body.") from exc


def storable(text: str) -> bool:
    """Can PostgreSQL keep ``text``? Not with a NUL or an unpaired surrogate, both of which a
    JSON string (``\\u0000``, ``\\ud800``) can carry."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_storable(data: Any) -> None:
    """400 for a body with a string the database could not store, anywhere in it, or that
    nests deeper than ``MAX_DEPTH``."""
    pending = [(data, 0)]
    while pending:
        item, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise BadRequest(_TOO_DEEP)
        if isinstance(item, str):
            if not storable(item):
                raise BadRequest("The request contains a NUL character or invalid Unicode.")
        elif isinstance(item, dict):
            pending.extend((key, depth + 1) for key in item)
            pending.extend((value, depth + 1) for value in item.values())
        elif isinstance(item, list):
            pending.extend((element, depth + 1) for element in item)
