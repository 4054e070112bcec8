"""Links (guide 1.3–1.4): versioned ``self``, version-less ``bookmark``, and pagination ``next``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Protocol, TypeVar
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


class Identified(Protocol):
    """An item of a collection: named by its ``id``."""

    @property
    def id(self) -> object: ...


T = TypeVar("T", bound=Identified)


def split_page(request: web.Request, rows: list[T], limit: int) -> tuple[list[T], list[Link]]:
    """A page and its links from ``rows`` fetched with ``limit + 1``: the guide's rule, a
    ``next`` link exactly when items follow the page (guide 1.4), so the last page has
    none even when it is full."""
    page = rows[:limit]
    if len(rows) <= limit or not page:
        return page, []
    return page, [next_link(base_url(request), request.path, request.query, page[-1].id)]


def isotime(value: datetime | None) -> str:
    """ISO 8601 in UTC with a ``Z``, seconds precision, as in every sample."""
    if value is None:
        return ""
    if value.utcoffset():
        value = value.astimezone(UTC)
    return value.isoformat(timespec="seconds")[:19] + "Z"  # isoformat is C; strftime is slow
