"""Parsing request bodies and query strings into validated models."""

from __future__ import annotations

import json
from typing import Any, TypeVar

import pydantic
from aiohttp import web

from api_gateway.faults import BadMediaType, BadRequest
from api_gateway.negotiation import Format, body_format
from api_gateway.schemas import xml_body

M = TypeVar("M", bound=pydantic.BaseModel)


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


#: No v2 body nests deeper than a few levels (server > metadata > key, personality > file);
#: a deeper one is an attack on the parser or on whatever walks the result.
MAX_DEPTH = 16
_TOO_DEEP = f"The request body nests deeper than {MAX_DEPTH} levels."


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


def validate(model: type[M], data: Any) -> M:
    """``data`` as ``model``, or 400 badRequest naming the first thing wrong."""
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise BadRequest(describe(exc)) from exc


def describe(exc: pydantic.ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    where = "/".join(str(part) for part in error["loc"]) or "body"
    return f"Invalid input for field/attribute {where}: {error['msg']}."


def page_params(request: web.Request, max_limit: int) -> tuple[int, str | None]:
    """(page size, marker) from the query string.

    A limit above the maximum is reduced to it; a negative or non-integer one is a 400, as in
    the reference implementation.
    """
    raw_limit = request.query.get("limit")
    asked: int | None = None
    if raw_limit is not None:
        try:
            asked = int(raw_limit)
        except ValueError:
            raise BadRequest("limit param must be an integer") from None
        if asked < 0:
            raise BadRequest("limit param must be positive")
    return min(max_limit, asked or max_limit), request.query.get("marker")
