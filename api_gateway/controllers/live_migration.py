"""``os-migrateLive`` (guide 3.1 `os-migrateLive`), dispatched by ``POST /servers/{id}/action``.

Who may call it (administrators, by default: anyone else gets 403 whatever the body) is
checked by the dispatcher (api_gateway/policy.py) before the handler runs; the handler
validates the body (400) and calls the domain layer (api_gateway/live_migration.py); 202
without a body.
"""

from __future__ import annotations

from aiohttp import web

from api_gateway import keys
from api_gateway.controllers.server_actions import ActionCall, action
from api_gateway.live_migration import ACTION, LiveMigrations
from api_gateway.schemas.live_migration import live_migrate

#: No routes of its own: the action arrives through ``POST /servers/{id}/action``; the
#: application lists this module with the controllers, which imports it and so registers it.
routes = web.RouteTableDef()


@action(ACTION)
async def migrate_live(call: ActionCall) -> web.StreamResponse:
    request = live_migrate(call.body)
    await LiveMigrations(keys.compute(call.request)).migrate(call.ctx, call.server_id, request)
    return web.Response(status=202)
