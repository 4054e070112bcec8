"""Server actions: ``POST /servers/{id}/action`` (guide 2.3–2.3.7).

The body's single top-level key (the XML root element) names the action. Actions live in a
registry, name -> handler: this module registers the core actions of chapter 2; the admin
actions of chapter 3, or an extension's, register theirs from their own module with
``@action("pause")`` and are dispatched here unchanged::

    from api_gateway.controllers.server_actions import ActionCall, action

    @action("pause")
    async def pause(call: ActionCall) -> web.StreamResponse: ...
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from api_gateway import keys
from api_gateway.context import RequestContext
from api_gateway.controllers.servers import extended_view
from api_gateway.faults import BadRequest
from api_gateway.responses import render
from api_gateway.routing import member
from api_gateway.schemas.common import read_body, validate
from api_gateway.schemas.server_actions import (
    ChangePassword,
    CreateImage,
    Reboot,
    RebootType,
    Rebuild,
    Resize,
    members,
)
from api_gateway.server_actions import ServerActions
from api_gateway.views import servers as view
from api_gateway.views.links import base_url, resource_links

routes = web.RouteTableDef()


@dataclass(frozen=True)
class ActionCall:
    """One action request: who asks, on which server, and the value under the action's key
    (still unvalidated: each handler validates its own)."""

    request: web.Request
    ctx: RequestContext
    server_id: str
    body: Any

    @property
    def actions(self) -> ServerActions:
        return ServerActions(keys.compute(self.request))


ActionHandler = Callable[[ActionCall], Awaitable[web.StreamResponse]]


class ActionRegistry:
    """Action name -> handler. Registering a name twice is a programming error."""

    def __init__(self) -> None:
        self._handlers: dict[str, ActionHandler] = {}

    def register(self, name: str) -> Callable[[ActionHandler], ActionHandler]:
        def add(handler: ActionHandler) -> ActionHandler:
            if name in self._handlers:
                raise ValueError(f"the server action {name!r} is registered twice")
            self._handlers[name] = handler
            return handler

        return add

    def get(self, name: str) -> ActionHandler | None:
        return self._handlers.get(name)

    def names(self) -> frozenset[str]:
        return frozenset(self._handlers)


REGISTRY = ActionRegistry()
action = REGISTRY.register


@routes.post(member("/servers/{server_id}/action"))
async def dispatch(request: web.Request) -> web.StreamResponse:
    """Hand the body to its action's handler: 400 unless the body names exactly one action
    that exists (checked before the server is looked up, as the reference implementation)."""
    body = await read_body(request)
    if not isinstance(body, dict) or len(body) != 1:
        raise BadRequest("Malformed request body")
    ((name, value),) = body.items()
    handler = REGISTRY.get(name)
    if handler is None:
        raise BadRequest(f"There is no such action: {name}")
    call = ActionCall(request, keys.context(request), request.match_info["server_id"], value)
    keys.compute(request).policy.enforce(call.ctx, name)  # 403 before anything is looked at
    return await handler(call)


# --- chapter 2: the core actions -------------------------------------------------------------


@action("changePassword")
async def change_password(call: ActionCall) -> web.StreamResponse:
    args = validate(ChangePassword, call.body)
    await call.actions.change_password(call.ctx, call.server_id, args.admin_pass)
    return web.Response(status=202)


@action("reboot")
async def reboot(call: ActionCall) -> web.StreamResponse:
    args = validate(Reboot, members(call.body))
    await call.actions.reboot(call.ctx, call.server_id, hard=args.type is RebootType.HARD)
    return web.Response(status=202)


@action("rebuild")
async def rebuild(call: ActionCall) -> web.StreamResponse:
    """202 with the whole server as the rebuild left it (status REBUILD) and, this once, its
    password (Ex 2.31/2.32); ``Location`` is the server's URL."""
    args = validate(Rebuild, call.body)
    rebuilt = await call.actions.rebuild(call.ctx, call.server_id, args)
    server = view.detail(
        rebuilt.server, base_url(call.request), call.ctx.project_id, extended_view(call.request)
    )
    server["adminPass"] = rebuilt.admin_pass
    return render(
        call.request,
        {"server": server},
        status=202,
        headers={"Location": server["links"][0]["href"]},
    )


@action("resize")
async def resize(call: ActionCall) -> web.StreamResponse:
    args = validate(Resize, call.body)
    await call.actions.resize(call.ctx, call.server_id, args.flavor_ref)
    return web.Response(status=202)


@action("confirmResize")
async def confirm_resize(call: ActionCall) -> web.StreamResponse:
    await call.actions.confirm_resize(call.ctx, call.server_id)
    return web.Response(status=204)


@action("revertResize")
async def revert_resize(call: ActionCall) -> web.StreamResponse:
    await call.actions.revert_resize(call.ctx, call.server_id)
    return web.Response(status=202)


@action("createImage")
async def create_image(call: ActionCall) -> web.StreamResponse:
    """202 without a body; ``Location`` is the new image's URL, to follow its status."""
    args = validate(CreateImage, call.body)
    image_id = await call.actions.create_image(call.ctx, call.server_id, args)
    (self_link, _) = resource_links(base_url(call.request), call.ctx.project_id, "images", image_id)
    return web.Response(status=202, headers={"Location": self_link["href"]})
