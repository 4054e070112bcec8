"""``os-getVNCConsole`` and ``os-getSPICEConsole`` (nova 2013.1's os-consoles): the URL of a
running server's console.

Unlike the other server actions they change nothing, so they start no task and leave no
record in the audit trail, and a lock does not refuse them (nova allowed consoles of locked
servers). The gateway asks the server's host where the guest's display listens (a call on the
bus, answered from the running domain: its port is chosen when the guest starts), keeps a
random token for that address (shared/db/console_tokens.py) and answers the URL that carries
it; the console proxy (proxy.py) takes the token and relays to the display.

The answers are nova's: 400 "Invalid console type" for a type the action does not take,
404 for a server the caller cannot see, 409 for a server that is not ACTIVE (or not running
on its host), 400 "Unavailable console type" where the guest has no display of that protocol
(a QEMU without SPICE), 501 where the hypervisor gives no consoles at all (nova's drivers
without them; the fake one and libvirt's test one), 503 when the host does not answer.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from api_gateway import keys
from api_gateway.auth.policy import authorize
from api_gateway.consoles import types
from api_gateway.consoles.types import ConsoleType
from api_gateway.http.faults import BadRequest, NotImplementedFault
from api_gateway.http.negotiation import CONTENT_TYPES, Format, response_format
from api_gateway.http.responses import render
from api_gateway.http.serializers import xml
from api_gateway.views.links import base_url
from shared import errors
from shared.bus import CallTimeout, PublishFailed
from shared.db import console_tokens
from shared.db.console_tokens import ConsoleTarget
from shared.db.records import Server
from shared.rpcapi import ComputeClient, ConsoleRefused
from shared.states import VmState

log = logging.getLogger(__name__)

#: the policy operation of both actions (api_gateway/auth/policy.py)
POLICY = "os-consoles"

#: the ports a display may be on (libvirt's remote_display_port_min/max, QEMU's VNC range):
#: the proxy connects where a host says, so a host is not believed about a port outside
#: them, where the services of the gateway's own network are (PostgreSQL, RabbitMQ, ssh...)
DISPLAY_PORTS = (5900, 65535)

#: an action's answer, from the request and the action's value in the body
Answer = Callable[[web.Request, Any], Awaitable[web.StreamResponse]]


async def get_vnc_console(request: web.Request, value: Any) -> web.StreamResponse:
    return await _console(request, "os-getVNCConsole", value)


async def get_spice_console(request: web.Request, value: Any) -> web.StreamResponse:
    return await _console(request, "os-getSPICEConsole", value)


#: the actions of this extension, by the body's key (the dispatcher of server actions,
#: api_gateway/controllers/server_actions.py, runs them)
ACTIONS: dict[str, Answer] = {
    "os-getVNCConsole": get_vnc_console,
    "os-getSPICEConsole": get_spice_console,
}


async def _console(request: web.Request, action: str, value: Any) -> web.StreamResponse:
    authorize(request, POLICY)  # 403 before anything is looked at, as every action
    kind = _console_type(action, value)
    ctx = keys.context(request)
    server = await keys.compute(request).get_server(ctx, request.match_info["server_id"])
    target = await _display(request, server, kind)
    token = str(uuid.uuid4())
    settings = request.app[keys.SETTINGS]
    await console_tokens.insert(
        request.app[keys.POOL], token, target, ttl_s=settings.console_token_ttl_s
    )
    answer = {"type": kind.name, "url": types.url(settings, base_url(request), kind, token)}
    return _render(request, answer)


def _console_type(action: str, value: Any) -> ConsoleType:
    """The type asked for; 400 with nova's words when the action does not take it."""
    if not isinstance(value, dict):
        raise BadRequest("Malformed request body")
    name = value.get("type")
    kind = types.of_action(action, name)
    if kind is None:
        raise errors.Invalid(f"Invalid console type {name}")
    return kind


async def _display(request: web.Request, server: Server, kind: ConsoleType) -> ConsoleTarget:
    """Where the server's display listens now, as its host says."""
    if server.vm_state != VmState.ACTIVE or server.host is None:
        raise errors.Conflict(_not_ready(kind, server.id))
    settings = request.app[keys.SETTINGS]
    client = ComputeClient(request.app[keys.BUS], server.host)
    try:
        answer = await client.get_console(
            keys.context(request).request_id,
            server.id,
            kind.protocol,
            timeout_s=settings.console_call_timeout_s,
        )
    except (PublishFailed, CallTimeout) as exc:
        raise errors.ServiceUnavailable(
            f"The server's host did not say where its console is; try again later. ({exc})"
        ) from exc
    except ConsoleRefused as refused:
        raise _refusal(refused, kind, server.id) from refused
    if not DISPLAY_PORTS[0] <= answer.port <= DISPLAY_PORTS[1]:
        log.warning("host %s gave display port %d, refused", server.host, answer.port)
        raise errors.ServiceUnavailable("The server's host gave no usable console address.")
    return ConsoleTarget(server.id, kind.name, answer.host, answer.port)


def _not_ready(kind: ConsoleType, server_id: uuid.UUID) -> str:
    """nova 2013.1's 409 message, which differed between its two actions."""
    if kind.protocol == "vnc":
        return "Instance not yet ready"
    return f"Instance {server_id} is not ready"


def _refusal(refused: ConsoleRefused, kind: ConsoleType, server_id: uuid.UUID) -> Exception:
    """The fault of a host's refusal, in nova's words."""
    if refused.reason == "unsupported":
        return NotImplementedFault(
            f"Unable to get {kind.protocol} console, functionality not implemented"
        )
    if refused.reason == "unavailable":
        return errors.Invalid(f"Unavailable console type {kind.name}.")
    return errors.Conflict(_not_ready(kind, server_id))


def _render(request: web.Request, console: dict[str, str]) -> web.StreamResponse:
    """200 ``{"console": {"type", "url"}}``; in XML nova's flat ``<console>`` in no
    namespace (samples/nova-2013.1/os-consoles)."""
    if response_format(request) is Format.XML:
        return web.Response(
            body=xml.flat_document(xml.flat("console", console)),
            content_type=CONTENT_TYPES[Format.XML],
        )
    return render(request, {"console": console})
