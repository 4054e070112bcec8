"""``os-getConsoleOutput`` (nova 2013.1's os-console-output): the end of a server's serial
console log, what ``openstack console log show`` and ``nova console-log`` print.

Like the console URLs (actions.py) it changes nothing: no task, no audit trail record, a lock
does not refuse it. The gateway asks the server's host (a call on the bus, as for a display's
address); the host reads the log through its driver, at most its last 100 KiB, and cuts the
lines asked for (compute_agent/consoles.py).

The answers: 400 for a ``length`` that is not an integer of -1 or more
(schemas/console_output.py), 404 for a server the caller cannot see, 409 for a server that
has no guest to print anything (no host yet, or none on its host now: still building, gone),
503 when the host does not answer in time.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from api_gateway import keys
from api_gateway.auth.policy import authorize
from api_gateway.consoles.actions import Answer
from api_gateway.schemas import console_output as schema
from api_gateway.views import console_output as view
from shared import errors
from shared.bus import CallTimeout, PublishFailed
from shared.db.records import Server
from shared.rpcapi import ComputeClient, ConsoleRefused

#: the policy operation (nova's compute_extension:console_output; api_gateway/auth/policy.py)
POLICY = "os-console-output"

#: nova's 409 for a server with no guest (its InstanceNotReady)
NOT_READY = "Instance not yet ready"


async def get_console_output(request: web.Request, value: Any) -> web.StreamResponse:
    authorize(request, POLICY)  # 403 before anything is looked at, as every action
    length = schema.console_output(value)
    ctx = keys.context(request)
    server = await keys.compute(request).get_server(ctx, request.match_info["server_id"])
    return view.render(request, await _output(request, server, length))


#: the action, by the body's key (the dispatcher of server actions runs it,
#: api_gateway/controllers/server_actions.py)
ACTIONS: dict[str, Answer] = {"os-getConsoleOutput": get_console_output}


async def _output(request: web.Request, server: Server, length: int | None) -> str:
    """The log's last ``length`` lines, as the server's host gives them."""
    if server.host is None:
        raise errors.Conflict(NOT_READY)
    client = ComputeClient(request.app[keys.BUS], server.host)
    try:
        return await client.get_console_output(
            keys.context(request).request_id,
            server.id,
            length,
            timeout_s=request.app[keys.SETTINGS].console_call_timeout_s,
        )
    except (PublishFailed, CallTimeout) as exc:
        raise errors.ServiceUnavailable(
            f"The server's host did not give its console output; try again later. ({exc})"
        ) from exc
    except ConsoleRefused as refused:
        raise errors.Conflict(NOT_READY) from refused
