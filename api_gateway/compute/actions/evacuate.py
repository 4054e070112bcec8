"""evacuate (nova's os-evacuate, administrators): a server whose host is gone is rebuilt from
its image on another host, keeping its id, addresses, metadata and config drive.

The server's host must be down, as a conductor judged it (no heartbeat, and marked down:
shared/db/hosts.py ``state``), else 409 as nova answered: a host that still runs
the server would run it twice. A host the request names must exist (404) and be up (400).
The evacuation is recorded (``accepted``, with the server's spec) and goes to the conductor,
which claims the destination (the scheduler's, or the named host), moves the server's
accounting there and has that host rebuild it (conductor/evacuate.py). ``stratus host
evacuate`` runs this same plan for each server of a dead host (stratus/admin.py).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from api_gateway.compute.actions.plan import Locked, ThroughConductor
from api_gateway.compute.passwords import generate_password
from api_gateway.context import RequestContext
from api_gateway.schemas.admin_actions import Evacuate as EvacuateArgs
from shared.db import evacuations, hosts
from shared.db.hosts import HostState
from shared.db.pool import Conn
from shared.errors import Conflict, Invalid, NotFound
from shared.rpcapi import ConductorClient, Envelope

if TYPE_CHECKING:
    from api_gateway.compute.api import ComputeAPI


def still_in_use(host: str) -> str:
    """nova's refusal (409) to evacuate from a host that is up."""
    return f"Compute service of {host} is still in use."


class Evacuate(ThroughConductor):
    action = "evacuate"
    #: the point of it: the server's host is down
    needs_live_host = False

    def __init__(self, args: EvacuateArgs) -> None:
        self.request = args
        self.evacuation_id = uuid.uuid4()
        #: the rebuilt guest's password: the request's, or a new one; shown once, in the 200
        self.admin_pass = args.admin_pass or generate_password()

    async def check(self, compute: ComputeAPI, ctx: RequestContext) -> None:
        """404 for a named host that does not exist (nova's ComputeHostNotFound), before
        the server is looked at."""
        target = self.request.host
        if target is not None and await hosts.get(compute.pool, target) is None:
            raise NotFound(f"Compute host {target} could not be found.")

    async def prepare(self, locked: Locked) -> None:
        row, settings = locked.row, locked.settings
        source = row.placed_host
        down_after_s = settings.host_down_after_s
        if await hosts.state(locked.conn, source, down_after_s) is HostState.UP:
            raise Conflict(still_in_use(source))
        target = self.request.host
        if target is not None:
            if target == source:
                raise Invalid("The target host can't be the same one.")
            state = await hosts.state(locked.conn, target, down_after_s)
            if state is not HostState.UP:
                raise Invalid(f"Compute service of {target} is unavailable at this time.")
        await evacuations.insert(
            locked.conn,
            evacuations.NewEvacuation(
                id=self.evacuation_id,
                server_id=row.id,
                action_id=locked.action_id,
                source_host=source,
                requested_host=target,
                instance=await locked.spec(),
            ),
        )

    async def command(self, to: ConductorClient, envelope: Envelope) -> None:
        await to.evacuate_server(envelope, self.evacuation_id, self.admin_pass)

    async def undo(self, conn: Conn) -> None:
        await evacuations.discard(conn, self.evacuation_id)
