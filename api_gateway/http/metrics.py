"""Count and time every request by the route it matched (``stratus_http_*``, shared/metrics.py).

The route label is the route's template (``/v2/{tenant_id}/servers/{server_id}``), never the
raw path, so the number of series is bounded by the routes, methods and statuses there are;
``/{path}`` is the catch-all that answers what no route matched (404, 405, 300). An unknown
method is counted as ``other`` for the same reason.

The middleware is on the benchmarked request path: a request costs one dictionary lookup for
its (route, method, status) children, made once and kept, plus one counter increment and one
histogram observation.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web
from aiohttp.typedefs import Handler
from aiohttp.web_urldispatcher import AbstractResource
from prometheus_client import Counter, Histogram

from shared import metrics

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_UNMATCHED = "unmatched"
#: the status of a request whose client went away before it was answered (nginx's 499)
_CLIENT_CLOSED = 499

_Key = tuple[AbstractResource | None, str, int]
_children: dict[_Key, tuple[Counter, Histogram]] = {}


def route_label(resource: AbstractResource | None) -> str:
    """The template of a route, without the optional trailing slash and format suffix
    every v2 route allows (api_gateway/http/routing.py)."""
    if resource is None:
        return _UNMATCHED
    return resource.canonical.replace("{_slash}", "").replace("{_fmt}", "") or "/"


def _metrics_of(key: _Key) -> tuple[Counter, Histogram]:
    resource, method, status = key
    route = route_label(resource)
    children = (
        metrics.HTTP_REQUESTS.labels(route, method, str(status)),
        metrics.HTTP_DURATION.labels(route, method),
    )
    _children[key] = children
    return children


def _observe(request: web.Request, status: int, seconds: float) -> None:
    method = request.method if request.method in _METHODS else "other"
    key = (request.match_info.route.resource, method, status)
    requests, duration = _children.get(key) or _metrics_of(key)
    requests.inc()
    duration.observe(seconds)


@web.middleware
async def http_metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The outermost middleware: it sees the status the client gets, faults included."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:  # redirects travel as exceptions past the fault handler
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = _CLIENT_CLOSED
        raise
    finally:
        _observe(request, status, time.perf_counter() - started)
