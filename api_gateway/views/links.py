"""Links (API.md §6–7): versioned ``self``, version-less ``bookmark``, and pagination ``next``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from api_gateway.keys import SETTINGS

Link = dict[str, str]


def base_url(request: web.Request) -> str:
    """Scheme and authority the client used (or the configured public URL behind a proxy)."""
    public = request.app[SETTINGS].public_url
    if public:
        return public.rstrip("/")
    return f"{request.scheme}://{request.host}"


def resource_links(base: str, tenant_id: str, collection: str, item_id: object) -> list[Link]:
    return [
        {"rel": "self", "href": f"{base}/v2/{tenant_id}/{collection}/{item_id}"},
        {"rel": "bookmark", "href": f"{base}/{tenant_id}/{collection}/{item_id}"},
    ]


def next_link(base: str, path: str, query: Mapping[str, str], last_id: object) -> Link:
    """The link to the page after ``last_id``: the same query with the marker replaced."""
    params = {k: v for k, v in query.items() if k != "marker"}
    params["marker"] = str(last_id)
    return {"rel": "next", "href": f"{base}{path}?{urlencode(params)}"}


def collection_links(
    request: web.Request, items: list[Any], limit: int | None, id_key: str = "id"
) -> list[Link]:
    """``[next]`` when the client asked for a page size and this page is full, else ``[]``
    (the reference implementation's rule: a last page that happens to be full costs the
    client one empty request)."""
    if limit is None or not items or len(items) < limit:
        return []
    return [next_link(base_url(request), request.path, request.query, items[-1][id_key])]


def isotime(value: datetime | None) -> str:
    """ISO 8601 in UTC with a ``Z``, seconds precision, as in every sample."""
    if value is None:
        return ""
    if value.utcoffset():
        value = value.astimezone(UTC)
    return value.isoformat(timespec="seconds")[:19] + "Z"  # isoformat is C; strftime is slow
