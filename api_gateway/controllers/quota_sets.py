"""nova 2013.1's os-quota-sets: a project's quotas.

* ``GET /os-quota-sets/{project}``: the project's quotas (its members and administrators;
  403 for others), the defaults with what an administrator set;
* ``GET /os-quota-sets/{project}/defaults``: the defaults (anyone, as in nova);
* ``PUT /os-quota-sets/{project}`` ``{"quota_set": {"instances": 20, ...}}``
  (administrators): sets the named quotas (-1: unlimited), answers the whole set without
  ``id``, as nova 2013.1 did. nova 2013.1 neither refused a quota below what is in use nor
  had ``DELETE`` (both came in 2013.2): neither does Stratus.

The keys are nova 2013.1's; the resources Stratus does not serve (floating and fixed IPs,
security groups and their rules) are answered with nova's defaults, and can be set, to no
effect; ``injected_file_path_bytes`` has nova's default too, and is enforced. Where the quotas
are enforced: ``api_gateway/compute/quotas.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from xml.sax.saxutils import quoteattr

from aiohttp import web

from api_gateway import keys
from api_gateway.auth.policy import configured
from api_gateway.compute import quotas
from api_gateway.http.bodies import read_body
from api_gateway.http.negotiation import CONTENT_TYPES, Format, response_format
from api_gateway.http.responses import render
from api_gateway.http.routing import member
from api_gateway.http.serializers import xml
from api_gateway.schemas.common import validate
from api_gateway.schemas.quota_sets import QuotaSetBody
from shared.db import quota_overrides

routes = web.RouteTableDef()


def _answer(
    request: web.Request, values: Mapping[str, int], project_id: str | None
) -> web.Response:
    """``{"quota_set": {...}}`` in nova's key order; XML as nova wrote it: ``<quota_set
    id=...>`` with one text child per quota, in no namespace."""
    ordered = {key: values[key] for key in sorted(values)}
    if response_format(request) is Format.XML:
        inner = "".join(f"<{key}>{value}</{key}>" for key, value in ordered.items())
        opening = "<quota_set" if project_id is None else f"<quota_set id={quoteattr(project_id)}"
        return web.Response(
            body=xml.flat_document(f"{opening}>{inner}</quota_set>"),
            content_type=CONTENT_TYPES[Format.XML],
        )
    body: dict[str, Any] = dict(ordered)
    if project_id is not None:
        body["id"] = project_id
    return render(request, {"quota_set": dict(sorted(body.items()))})


def _authorize(request: web.Request, operation: str, project_id: str) -> None:
    """403 unless the policy lets the caller do ``operation`` on ``project_id``'s quotas."""
    policy = configured(request.app[keys.SETTINGS].policy)
    policy.enforce(keys.context(request), operation, project_id=project_id)


@routes.get(member("/os-quota-sets/{project}/defaults"))
async def defaults(request: web.Request) -> web.Response:
    project_id = request.match_info["project"]
    return _answer(request, quotas.defaults(request.app[keys.SETTINGS]), project_id)


@routes.get(member("/os-quota-sets/{project}"))
async def show(request: web.Request) -> web.Response:
    project_id = request.match_info["project"]
    _authorize(request, "os-quota-sets:show", project_id)
    settings = request.app[keys.SETTINGS]
    values = await quotas.project_quotas(request.app[keys.POOL], settings, project_id)
    return _answer(request, values, project_id)


@routes.put(member("/os-quota-sets/{project}"))
async def update(request: web.Request) -> web.Response:
    project_id = request.match_info["project"]
    _authorize(request, "os-quota-sets:update", project_id)
    limits = validate(QuotaSetBody, await read_body(request)).quota_set.limits()
    settings, pool = request.app[keys.SETTINGS], request.app[keys.POOL]
    async with pool.acquire() as conn, conn.transaction():
        if limits:
            await quota_overrides.put(conn, project_id, limits)
        values = await quotas.project_quotas(conn, settings, project_id)
    return _answer(request, values, None)
