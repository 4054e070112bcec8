"""The admin actions of chapter 3 (guide 3.1), dispatched by ``POST /servers/{id}/action``.

Every one answers 202 without a body (createBackup with a ``Location`` when it keeps the new
image). Who may call which is checked by the dispatcher (api_gateway/policy.py) before a
handler runs; each handler validates its body and calls the domain layer
(api_gateway/admin_actions.py).
"""

from __future__ import annotations

from aiohttp import web

from api_gateway import keys
from api_gateway.admin_actions import AdminActions
from api_gateway.controllers.server_actions import ActionCall, action
from api_gateway.schemas.admin_actions import create_backup, reset_state
from api_gateway.views.links import base_url, resource_links

#: No routes of its own: the actions arrive through ``POST /servers/{id}/action``; the
#: application lists this module with the controllers, which imports it and so registers them.
routes = web.RouteTableDef()


def _actions(call: ActionCall) -> AdminActions:
    return AdminActions(keys.compute(call.request))


_ACCEPTED = 202


@action("pause")
async def pause(call: ActionCall) -> web.StreamResponse:
    await _actions(call).power(call.ctx, call.server_id, "pause")
    return web.Response(status=_ACCEPTED)


@action("unpause")
async def unpause(call: ActionCall) -> web.StreamResponse:
    await _actions(call).power(call.ctx, call.server_id, "unpause")
    return web.Response(status=_ACCEPTED)


@action("suspend")
async def suspend(call: ActionCall) -> web.StreamResponse:
    await _actions(call).power(call.ctx, call.server_id, "suspend")
    return web.Response(status=_ACCEPTED)


@action("resume")
async def resume(call: ActionCall) -> web.StreamResponse:
    await _actions(call).power(call.ctx, call.server_id, "resume")
    return web.Response(status=_ACCEPTED)


@action("migrate")
async def migrate(call: ActionCall) -> web.StreamResponse:
    await _actions(call).migrate(call.ctx, call.server_id)
    return web.Response(status=_ACCEPTED)


@action("resetNetwork")
async def reset_network(call: ActionCall) -> web.StreamResponse:
    await _actions(call).network(call.ctx, call.server_id, "resetNetwork")
    return web.Response(status=_ACCEPTED)


@action("injectNetworkInfo")
async def inject_network_info(call: ActionCall) -> web.StreamResponse:
    await _actions(call).network(call.ctx, call.server_id, "injectNetworkInfo")
    return web.Response(status=_ACCEPTED)


@action("lock")
async def lock(call: ActionCall) -> web.StreamResponse:
    await _actions(call).lock(call.ctx, call.server_id)
    return web.Response(status=_ACCEPTED)


@action("unlock")
async def unlock(call: ActionCall) -> web.StreamResponse:
    await _actions(call).unlock(call.ctx, call.server_id)
    return web.Response(status=_ACCEPTED)


@action("createBackup")
async def backup(call: ActionCall) -> web.StreamResponse:
    """202; ``Location`` is the new image's URL when the rotation keeps it (rotation > 0:
    with 0 the backup is deleted as soon as it is saved, so there is nothing to follow)."""
    args = create_backup(call.body)
    image_id = await _actions(call).create_backup(call.ctx, call.server_id, args)
    if args.rotation == 0:
        return web.Response(status=_ACCEPTED)
    (self_link, _) = resource_links(base_url(call.request), call.ctx.project_id, "images", image_id)
    return web.Response(status=_ACCEPTED, headers={"Location": self_link["href"]})


@action("os-resetState")
async def reset_server_state(call: ActionCall) -> web.StreamResponse:
    state = reset_state(call.body)
    await _actions(call).reset_state(call.ctx, call.server_id, state)
    return web.Response(status=_ACCEPTED)
