"""The one protocol of the server actions: a plan, which ``ComputeAPI.perform`` runs.

1. ``check``, before any transaction: what the request alone decides (its own limits, the
   image or flavor it names), so those 400s and 413s come before a 404 for the server, as the
   reference implementation answered.
2. The start, the same for every action (``ComputeAPI.start_action``): lock the server's row;
   409 when its lock refuses the action to the caller, when the transition table
   (shared/states.py) does not allow it now, when it ``needs_host`` and the server is on
   none, or when it ``needs_live_host`` and the server's host is down; record the action and
   set its task.
3. ``prepare``, in that transaction, the row still locked: further refusals, and what the
   action changes at once (a rebuild's labels, a snapshot's image row, a migration record).
   Raising there leaves nothing written.
4. ``route``: the client of the queue the command goes to (the server's host, a host its
   resize names, the conductor), or None when the transaction did all there was to do.
5. ``command``: the command, sent through that client (shared/rpcapi.py).
6. ``undo``: should the command not be queued, takes back what ``prepare`` wrote (the task and
   the action's record are put back for every action alike).

A plan is made for one request and keeps what it gathers between the steps.
"""

from __future__ import annotations

import abc
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar

from api_gateway.compute.specs import instance_spec
from api_gateway.context import RequestContext
from shared.config import Settings
from shared.db import servers
from shared.db.pool import Conn
from shared.db.records import LockedServer, Server
from shared.messages import InstanceSpec
from shared.rpcapi import Clients, ComputeClient, ConductorClient, Envelope

if TYPE_CHECKING:
    from api_gateway.compute.api import ComputeAPI

C = TypeVar("C")
T = TypeVar("T")


@dataclass(frozen=True)
class Locked:
    """A server whose row the action's transaction holds locked, and what a plan's
    ``prepare`` may need there."""

    conn: Conn
    #: the row as it was when locked (before the action's task was set)
    row: LockedServer
    action_id: uuid.UUID
    ctx: RequestContext
    settings: Settings

    async def server(self) -> Server:
        """The server's full row (metadata, addresses) as this transaction sees it now."""
        server = await servers.get(self.conn, self.row.id, None)
        assert server is not None, "locked in this transaction"
        return server

    async def spec(self) -> InstanceSpec:
        """What the server's host needs to define the server again."""
        return await instance_spec(self.conn, await self.server())


def gathered(value: T | None) -> T:
    """What a plan's ``prepare`` gathered, for the steps after it."""
    assert value is not None, "gathered by the plan's prepare"
    return value


class ActionPlan(abc.ABC, Generic[C]):
    """One server action, for one request; ``C`` is the client its command goes through."""

    #: the action as the transition table, the policy and the audit trail name it
    action: str
    #: refused (409) for a server on no host (never scheduled): nothing could act on it
    needs_host: ClassVar[bool] = True
    #: refused (409) while the server's host is down: its command would wait in the host's
    #: queue, the reaper would end the task in ERROR, and the host, back, would still carry
    #: it out after the user was told it failed
    needs_live_host: ClassVar[bool] = True

    async def check(self, compute: ComputeAPI, ctx: RequestContext) -> None:
        """Refuse what needs no lock (raise); nothing by default."""

    async def prepare(self, locked: Locked) -> None:
        """Refuse or write under the row lock; nothing by default."""

    @abc.abstractmethod
    def route(self, clients: Clients, row: LockedServer) -> C | None:
        """The client the command goes through; None when nothing is sent."""

    @abc.abstractmethod
    async def command(self, to: C, envelope: Envelope) -> None:
        """Send the action's command."""

    async def undo(self, conn: Conn) -> None:
        """Take back what ``prepare`` wrote; nothing by default."""


class OnItsHost(ActionPlan[ComputeClient]):
    """An action the server's own host carries out."""

    def route(self, clients: Clients, row: LockedServer) -> ComputeClient:
        return clients.compute(row.placed_host)


class ThroughConductor(ActionPlan[ConductorClient]):
    """An action the conductor carries out: it chooses a host, or drives more than one."""

    def route(self, clients: Clients, row: LockedServer) -> ConductorClient:
        return clients.conductor()


class InDatabase(ActionPlan[None]):
    """An action done whole in the start's transaction (``prepare``): nothing is sent, and no
    host is needed."""

    needs_host = False
    needs_live_host = False

    def route(self, clients: Clients, row: LockedServer) -> None:
        return None

    async def command(self, to: None, envelope: Envelope) -> None:
        """Never called: ``route`` names no client."""
