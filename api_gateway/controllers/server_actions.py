"""Server actions: ``POST /servers/{id}/action`` (guide 2.3–2.3.7, 3.1).

The body's single top-level key (the XML root element) names the action; the action table
(api_gateway/compute/actions/table.py) says how to run it. The dispatcher answers 400 unless
the body names exactly one action that exists, then 403 unless the policy allows it (both
before the server is looked up, as the reference implementation), validates the action's
value (400), runs its plan, and answers the table's status without a body. The responses
below are the exceptions: the actions whose answer has a body or a ``Location``. The console
actions (api_gateway/consoles/actions.py, and output.py's console log) change nothing and run
no plan: they answer themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from api_gateway import keys
from api_gateway.auth.policy import authorize
from api_gateway.compute.actions.evacuate import Evacuate
from api_gateway.compute.actions.plan import ActionPlan, gathered
from api_gateway.compute.actions.rebuild import Rebuild
from api_gateway.compute.actions.snapshots import CreateBackup, CreateImage
from api_gateway.compute.actions.table import (
    ACTION_TABLE,
    CREATE_BACKUP,
    CREATE_IMAGE,
    EVACUATE,
    REBUILD,
    ServerAction,
)
from api_gateway.consoles import actions as consoles
from api_gateway.consoles import output as console_output
from api_gateway.http.bodies import read_body
from api_gateway.http.faults import BadRequest
from api_gateway.http.responses import render
from api_gateway.http.routing import member
from api_gateway.views import servers as view
from api_gateway.views.links import base_url, resource_links

routes = web.RouteTableDef()

P = TypeVar("P", bound=ActionPlan[Any])

#: The answer of an action from the plan that carried it out.
Response = Callable[[web.Request, P], web.StreamResponse]

RESPONSES: dict[str, Response[Any]] = {}

#: the actions that answer themselves, by the body's key
ANSWERED: dict[str, consoles.Answer] = {**consoles.ACTIONS, **console_output.ACTIONS}


def responds(action: ServerAction[Any, P]) -> Callable[[Response[P]], Response[P]]:
    """Declare the response of ``action`` (one with a body or a ``Location``)."""

    def add(response: Response[P]) -> Response[P]:
        RESPONSES[action.name] = response
        return response

    return add


@routes.post(member("/servers/{server_id}/action"))
async def dispatch(request: web.Request) -> web.StreamResponse:
    body = await read_body(request)
    if not isinstance(body, dict) or len(body) != 1:
        raise BadRequest("Malformed request body")
    ((name, value),) = body.items()
    answer = ANSWERED.get(name)
    if answer is not None:
        return await answer(request, value)
    action = ACTION_TABLE.get(name)
    if action is None:
        raise BadRequest(f"There is no such action: {name}")
    authorize(request, action.policy)  # 403 before anything is looked at
    plan = action.plan(action.schema(value))
    ctx = keys.context(request)
    await keys.compute(request).perform(ctx, request.match_info["server_id"], plan)
    response = RESPONSES.get(name)
    if response is not None:
        return response(request, plan)
    return web.Response(status=action.status)


@responds(REBUILD)
def rebuilt(request: web.Request, plan: Rebuild) -> web.StreamResponse:
    """202 with the whole server as the rebuild left it (status REBUILD) and, this once, its
    password (Ex 2.31/2.32); ``Location`` is the server's URL."""
    ctx = keys.context(request)
    rebuilt = gathered(plan.server)
    server = view.detail(rebuilt, base_url(request), ctx.project_id, view.UNDECORATED)
    server["adminPass"] = plan.admin_pass
    return render(
        request,
        {"server": server},
        status=202,
        headers={"Location": server["links"][0]["href"]},
    )


@responds(EVACUATE)
def evacuated(request: web.Request, plan: Evacuate) -> web.StreamResponse:
    """200 with the rebuilt guest's password (nova's os-evacuate), shown this once: the
    server is always rebuilt from its image here, never restarted from a shared disk."""
    return render(request, {"adminPass": plan.admin_pass})


@responds(CREATE_IMAGE)
def image_created(request: web.Request, plan: CreateImage) -> web.StreamResponse:
    """202 without a body; ``Location`` is the new image's URL, to follow its status."""
    return web.Response(status=202, headers={"Location": _image_url(request, plan)})


@responds(CREATE_BACKUP)
def backup_created(request: web.Request, plan: CreateBackup) -> web.StreamResponse:
    """202; ``Location`` is the new image's URL when the rotation keeps it (rotation > 0:
    with 0 the backup is deleted as soon as it is saved, so there is nothing to follow)."""
    if plan.rotation == 0:
        return web.Response(status=202)
    return web.Response(status=202, headers={"Location": _image_url(request, plan)})


def _image_url(request: web.Request, plan: CreateImage | CreateBackup) -> str:
    ctx = keys.context(request)
    (self_link, _) = resource_links(base_url(request), ctx.project_id, "images", plan.image_id)
    return self_link["href"]
