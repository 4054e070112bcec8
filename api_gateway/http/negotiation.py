"""Content negotiation (guide 1.2, 1.7): which format a response takes, which format a
request body is in, and which API version a version-less request asks for.

Response format, in order: the URI suffix (``.json``, ``.xml``; ``.atom`` on version
resources), then the ``Accept`` header with q-values, plain and vendor media types
(``application/vnd.openstack.compute+xml;version=2`` and the guide's
``application/vnd.openstack.compute.v2+xml``), then JSON. An ``Accept`` naming nothing we
speak falls back to JSON, as the reference implementation did (never 406).
"""

from __future__ import annotations

import re
from enum import StrEnum

from aiohttp import web


class Format(StrEnum):
    JSON = "json"
    XML = "xml"
    ATOM = "atom"


CONTENT_TYPES = {
    Format.JSON: "application/json",
    Format.XML: "application/xml",
    Format.ATOM: "application/atom+xml",
}

_SUFFIXES = {".json": Format.JSON, ".xml": Format.XML, ".atom": Format.ATOM}

#: media type (parameters removed) -> format
_MEDIA_TYPES = {
    "application/json": Format.JSON,
    "application/vnd.openstack.compute+json": Format.JSON,
    "application/vnd.openstack.compute.v2+json": Format.JSON,
    "application/xml": Format.XML,
    "application/vnd.openstack.compute+xml": Format.XML,
    "application/vnd.openstack.compute.v2+xml": Format.XML,
    "application/atom+xml": Format.ATOM,
}

_VERSIONED = re.compile(r"^application/vnd\.openstack\.compute\.v(?P<version>[\d.]+)\+")
_FORMAT_KEY = web.RequestKey("response_format", Format)


def _media_ranges(header: str) -> list[tuple[str, dict[str, str], float]]:
    """``Accept`` as (media type, parameters, q), in header order."""
    ranges = []
    for part in header.split(","):
        pieces = [p.strip() for p in part.split(";")]
        media = pieces[0].lower()
        if not media:
            continue
        params: dict[str, str] = {}
        for piece in pieces[1:]:
            name, _, value = piece.partition("=")
            params[name.strip().lower()] = value.strip().strip('"')
        try:
            q = float(params.pop("q", "1"))
        except ValueError:
            q = 0.0
        if not 0.0 <= q <= 1.0:
            # float() also reads "nan", "inf", "-1" and "1e9", none of them a qvalue (RFC 9110
            # §12.4.2): refused like any other malformed one. Left as they were, a nan made the
            # outcome depend on the ranges' order and an inf outweighed every valid q.
            q = 0.0
        ranges.append((media, params, q))
    return ranges


def _from_accept(header: str, allow_atom: bool) -> Format | None:
    best: tuple[float, int, Format] | None = None
    for position, (media, _params, q) in enumerate(_media_ranges(header)):
        if q <= 0:
            continue
        if media in ("*/*", "application/*"):
            fmt: Format | None = Format.JSON
        else:
            fmt = _MEDIA_TYPES.get(media)
        if fmt is None or (fmt is Format.ATOM and not allow_atom):
            continue
        candidate = (q, -position, fmt)
        if best is None or candidate[:2] > best[:2]:
            best = candidate
    return best[2] if best else None


def _path_suffix(path: str) -> str:
    """The format suffix ending a path that no route's ``{_fmt}`` parsed: a path no route
    matched (its 404 or 405), or a suffix that is a whole segment (``/servers/.json`` on a
    member route, where the id takes it) still answer in the format the suffix names, as the
    reference implementation did (it read the extension off the path before routing). Not
    under ``/image/``: the image service has no format suffixes."""
    if path.startswith("/image/"):
        return ""
    return next((suffix for suffix in (".json", ".xml") if path.endswith(suffix)), "")


def response_format(request: web.Request, *, allow_atom: bool = False) -> Format:
    """The format the response to ``request`` takes (decided once, then remembered)."""
    if _FORMAT_KEY in request:
        return request[_FORMAT_KEY]
    suffix = request.match_info.get("_fmt") or _path_suffix(request.path)
    fmt = _SUFFIXES.get(suffix)
    if fmt is Format.ATOM and not allow_atom:
        fmt = None
    if fmt is None:
        fmt = _from_accept(request.headers.get("Accept", ""), allow_atom) or Format.JSON
    request[_FORMAT_KEY] = fmt
    return fmt


def body_format(content_type: str) -> Format | None:
    """The format of a request body from its ``Content-Type`` (parameters ignored)."""
    fmt = _MEDIA_TYPES.get(content_type.split(";")[0].strip().lower())
    return fmt if fmt is not Format.ATOM else None


def requested_version(request: web.Request) -> str | None:
    """The API version a version-less (bookmark) request names through its media types:
    ``Accept`` or ``Content-Type`` as ``...compute.v2+json`` or with ``;version=2``."""
    for header in ("Accept", "Content-Type"):
        for media, params, _q in _media_ranges(request.headers.get(header, "")):
            versioned = _VERSIONED.match(media)
            if versioned:
                return versioned.group("version")
            if "version" in params and media in _MEDIA_TYPES:
                return params["version"]
    return None
