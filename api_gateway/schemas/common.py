"""Turning parsed request bodies and query strings into validated values (400 otherwise)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import pydantic
from aiohttp import web
from pydantic import BeforeValidator

from api_gateway.http.faults import BadRequest

M = TypeVar("M", bound=pydantic.BaseModel)


#: The texts nova v2.1 takes for a boolean (its ``parameter_types.boolean``), any case.
_BOOLEAN_TEXT = {
    **dict.fromkeys(("true", "1", "on", "yes"), True),
    **dict.fromkeys(("false", "0", "off", "no"), False),
}


def boolean(value: object) -> object:
    """A JSON boolean or the text of one: XML carries every value as text, and clients send
    ``"True"`` in JSON too (nova's multiple-create sample does). Anything else is refused."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _BOOLEAN_TEXT:
        return _BOOLEAN_TEXT[value.strip().lower()]
    raise ValueError("must be a boolean (true or false)")


Boolean = Annotated[bool, BeforeValidator(boolean)]


def validate(model: type[M], data: Any) -> M:
    """``data`` as ``model``, or 400 badRequest naming the first thing wrong."""
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise BadRequest(describe(exc)) from exc


def validator(model: type[M]) -> Callable[[Any], M]:
    """``validate`` for one model, as a schema of the action table takes it."""

    def parse(data: Any) -> M:
        return validate(model, data)

    return parse


def describe(exc: pydantic.ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    if error["type"] == "extra_forbidden" and error["loc"]:
        # nova v2.1's words for a member its schema does not know, naming the member (its
        # path too, as every other answer of ours names the field)
        member = error["loc"][-1]
        where = "/".join(str(part) for part in error["loc"])
        return (
            f"Invalid input for field/attribute {where}. Additional properties are not"
            f" allowed ('{member}' was unexpected)"
        )
    where = "/".join(str(part) for part in error["loc"]) or "body"
    return f"Invalid input for field/attribute {where}: {error['msg']}."


def page_params(
    request: web.Request, max_limit: int, *, zero_means_max: bool = False
) -> tuple[int, str | None]:
    """(page size, marker) from the query string.

    A limit above the maximum is reduced to it; a negative or non-integer one is a 400, as in
    the reference implementation. ``limit=0`` is an empty page (nova's database layer and
    glance answered nothing for it), or, with ``zero_means_max``, a page of the maximum size
    (nova's flavors, which never reached such a layer with a zero).
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
    if asked is None or (asked == 0 and zero_means_max):
        asked = max_limit
    return min(max_limit, asked), request.query.get("marker")
