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
    if fmt is Format.XML:
        try:
            return xml_body.parse(raw)
        except xml_body.MalformedXml as exc:
            raise BadRequest(str(exc)) from exc
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("Malformed request body.") from exc


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


def page_params(request: web.Request, max_limit: int) -> tuple[int, int | None, str | None]:
    """(effective limit, limit the client asked for, marker) from the query string.

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
    limit = min(max_limit, asked or max_limit)
    return limit, (limit if asked else None), request.query.get("marker")
