"""Turn a view's dict into an HTTP response."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pydantic_core
from aiohttp import web

JSON = "application/json"


def render(
    body: Mapping[str, Any] | None,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """A JSON response (no body for 204 and friends)."""
    if body is None:
        return web.Response(status=status, headers=headers)
    return web.Response(
        body=pydantic_core.to_json(body),
        status=status,
        content_type=JSON,
        headers=headers,
    )


def render_collection(
    name: str, items: list[bytes], links: list[dict[str, str]], *, status: int = 200
) -> web.Response:
    """A JSON collection ``{name: [...], name_links: [...]}`` from items already serialized."""
    body = b"".join((b'{"', name.encode(), b'":[', b",".join(items), b"]"))
    if links:
        body += b"".join((b',"', name.encode(), b'_links":', pydantic_core.to_json(links)))
    return web.Response(body=body + b"}", status=status, content_type=JSON)
