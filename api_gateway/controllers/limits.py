"""``GET /limits``: the account's rate and absolute limits, as they stand now (guide 1.6.3)."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from api_gateway import keys
from api_gateway.compute import quotas
from api_gateway.http.rate_limits import limiter_for
from api_gateway.http.responses import render
from api_gateway.http.routing import collection
from api_gateway.views import limits as view
from shared.db import rate_limits as counters

routes = web.RouteTableDef()


@routes.get(collection("/limits"))
async def show(request: web.Request) -> web.Response:
    ctx = keys.context(request)
    settings = request.app[keys.SETTINGS]
    pool = request.app[keys.POOL]
    limiter = limiter_for(settings.rate_limits)
    now = datetime.now(UTC)
    levels: dict[str, float] = {}
    if limiter.limits:
        now, levels = await counters.levels(
            pool, ctx.user_id, [limit.key for limit in limiter.limits]
        )
    used = await quotas.usage(pool, ctx.project_id)
    project_quotas = await quotas.project_quotas(pool, settings, ctx.project_id)
    absolute = view.absolute(used, project_quotas)
    return render(request, view.limits(view.rate(limiter.limits, levels, now), absolute))
