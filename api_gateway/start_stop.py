"""os-stop and os-start (nova's os-server-start-stop extension): power a server off and on
again while it stays on its host.

os-stop: ACTIVE (or ERROR) -> task powering-off -> STOPPED, status SHUTOFF; os-start:
STOPPED -> task powering-on -> ACTIVE. Each starts as every action does
(``ComputeAPI.start_action``: row lock, transition table, the server's lock, an action record,
the task state) and goes straight to the server's host; the host's report ends it
(``COMPLETIONS``: a failure ends the task and leaves the server as it was, with a fault).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import asyncpg

from api_gateway.compute import ComputeAPI
from api_gateway.context import RequestContext
from api_gateway.server_actions import instance_spec
from shared import bus as bus_mod
from shared.db import servers
from shared.db.pool import Conn
from shared.errors import Conflict
from shared.messages import ActionMessage, InstanceSpec, StartServer, StopServer
from shared.states import ACTIONS

#: builds the host's command from the server's locked row, the action's id and its spec
_Command = Callable[[asyncpg.Record, uuid.UUID, InstanceSpec], ActionMessage]


class StartStop:
    def __init__(self, compute: ComputeAPI) -> None:
        self.compute = compute

    async def stop(self, ctx: RequestContext, server_id: str) -> None:
        await self._act(
            ctx,
            server_id,
            "os-stop",
            lambda row, action_id, _: StopServer(
                request_id=ctx.request_id,
                server_id=row["id"],
                action_id=action_id,
                domain_name=f"instance-{row['id']}",
            ),
        )

    async def start(self, ctx: RequestContext, server_id: str) -> None:
        await self._act(
            ctx,
            server_id,
            "os-start",
            lambda row, action_id, spec: StartServer(
                request_id=ctx.request_id, server_id=row["id"], action_id=action_id, instance=spec
            ),
        )

    async def _act(
        self, ctx: RequestContext, server_id: str, action: str, command: _Command
    ) -> None:
        """Start ``action`` and send the host the command built from the locked row."""
        plan = _OnItsHost(action)
        row, action_id = await self.compute.start_action(
            ctx, server_id, action, prepare=plan.prepare
        )
        task = ACTIONS[action].task
        assert task is not None
        await self.compute.send_or_undo(
            bus_mod.compute_queue(row["host"]),
            command(row, action_id, plan.spec),
            task=task.value,
            previous_task=row["task_state"],
        )


class _OnItsHost:
    """Refuses a server on no host (never built: nothing to power); gathers its spec, for a
    host that must define it again."""

    def __init__(self, action: str) -> None:
        self.action = action
        self._spec: InstanceSpec | None = None

    async def prepare(self, conn: Conn, row: asyncpg.Record, action_id: uuid.UUID) -> None:
        if row["host"] is None:
            raise Conflict(f"Cannot '{self.action}' an instance that is on no host")
        server = await servers.get(conn, row["id"], None)
        assert server is not None, "locked in this transaction"
        self._spec = await instance_spec(conn, server)

    @property
    def spec(self) -> InstanceSpec:
        assert self._spec is not None, "gathered by the action's prepare"
        return self._spec
