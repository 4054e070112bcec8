"""Route paths with the v2 URI forms (guide ch. 2).

Every resource answers at its versioned URI (``/v2/{tenant_id}/servers/{id}``), with an
optional format suffix (``.json``/``.xml``; ``/servers.xml`` and ``/servers/.xml`` are the
same), and at its version-less bookmark URI (``/{tenant_id}/servers/{id}``), which needs the
version in a media type (MIME versioning) and otherwise gets 300 Multiple Choices.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web

from api_gateway.http.negotiation import requested_version

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SUFFIX = r"{_fmt:(?:\.(?:json|xml))?}"
_VARIABLE = re.compile(r"\{(\w+)\}")
_SUPPORTED_VERSIONS = {"2", "2.0"}


class MultipleChoices(Exception):
    """The request names no version we serve: answer with the choices document (300)."""


def _lazy(path: str) -> str:
    # ids may contain dots; a non-greedy match leaves a trailing .json/.xml to the suffix
    return _VARIABLE.sub(r"{\1:[^/]+?}", path)


def collection(path: str) -> str:
    """A collection under a project: ``/v2/{tenant_id}<path>``, ``/`` and suffix optional."""
    return "/v2/{tenant_id}" + _lazy(path) + "{_slash:/?}" + SUFFIX


def member(path: str) -> str:
    """A member under a project: ``/v2/{tenant_id}<path>`` with an optional suffix."""
    return "/v2/{tenant_id}" + _lazy(path) + SUFFIX


def _bookmark(handler: Handler) -> Handler:
    async def versioned_by_media_type(request: web.Request) -> web.StreamResponse:
        if requested_version(request) not in _SUPPORTED_VERSIONS:
            raise MultipleChoices
        return await handler(request)

    return versioned_by_media_type


def add_routes(app: web.Application, tables: Iterable[web.RouteTableDef]) -> None:
    """Register every route at its versioned path, then every project route again at its
    bookmark path (after all versioned ones, so ``/v2/...`` always wins)."""
    bookmarks: list[web.RouteDef] = []
    for table in tables:
        for definition in table:
            assert isinstance(definition, web.RouteDef)
            app.router.add_route(definition.method, definition.path, definition.handler)
            if definition.path.startswith("/v2/{tenant_id}"):
                bookmarks.append(definition)
    for definition in bookmarks:
        app.router.add_route(
            definition.method,
            definition.path.removeprefix("/v2"),
            _bookmark(definition.handler),
        )
