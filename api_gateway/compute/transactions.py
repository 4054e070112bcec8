"""How every write on a server runs (docs/architecture.md): one transaction that locks the
server's row, checks and records the action and sets its task; then a command on the bus; and
when the broker does not take it, that transaction's effect taken back, so no server is left
in a task nobody will ever finish."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from api_gateway.auth.policy import check_unlocked, operation_of
from api_gateway.compute.actions.plan import ActionPlan, Locked
from api_gateway.compute.checks import check_allowed, check_on_a_host, parse_uuid
from api_gateway.context import RequestContext
from shared.bus import Bus, PublishFailed
from shared.config import Settings
from shared.db import actions, hosts, servers
from shared.db.hosts import HostState
from shared.db.pool import UNAVAILABLE as DATABASE_UNAVAILABLE
from shared.db.pool import Conn
from shared.db.records import LockedServer
from shared.errors import Conflict, NotFound, ServiceUnavailable
from shared.rpcapi import Clients, Envelope
from shared.sealing import Keyring
from shared.states import ACTIONS, TaskState

log = logging.getLogger(__name__)

#: what a sent mark may fail with and the request still succeed (``Transactions._sent``)
_MARK_FAILURES: tuple[type[BaseException], ...] = (*DATABASE_UNAVAILABLE, asyncpg.PostgresError)

#: Takes back, should a command not be queued, what its transaction wrote.
Undo = Callable[[Conn], Awaitable[None]]

_NOT_QUEUED = "The request could not be queued; try again later."


@dataclass(frozen=True)
class Started:
    """An action whose transaction committed: the server's row as it was when locked (its
    host, its previous task) and the envelope of the action's command."""

    row: LockedServer
    envelope: Envelope


class Transactions:
    """The database, the bus and the settings a write needs, and the steps every write
    shares."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool, bus: Bus) -> None:
        self.settings = settings
        self.pool = pool
        #: seals the admin passwords of commands (shared/sealing.py); a gateway without
        #: STRATUS_MESSAGE_KEY stops here rather than at its first build
        self.clients = Clients(bus, Keyring.from_setting(settings.message_key))
        #: the sent marks of concurrent requests, made together (``_sent``)
        self.sent_marks = actions.SentMarks(pool)

    async def start_action(
        self, ctx: RequestContext, server_id: str, plan: ActionPlan[Any]
    ) -> Started:
        """Begin ``plan.action`` on a server in one transaction: lock the row, check the
        server's lock does not refuse it to the caller, that it is legal in the server's
        state now and that the server is on a host if it must be (else 409), record the
        action and set its task state (if it has one); then the plan's ``prepare``."""
        sid = parse_uuid(server_id, "Instance")
        action_id = uuid.uuid4()
        operation = operation_of(plan.action)
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self.locked(conn, ctx, sid, operation)
            check_allowed(row, plan.action)
            await self.record(conn, ctx, sid, plan.action, action_id)
            task = ACTIONS[plan.action].task
            if task is not None:
                await servers.set_task(conn, sid, task.value)
            if plan.needs_host:
                check_on_a_host(row, operation)
            if plan.needs_live_host and row.host is not None:
                await self.check_host_up(conn, row.host, operation)
            await plan.prepare(Locked(conn, row, action_id, ctx, self.settings))
        return Started(row, Envelope(ctx.request_id, sid, action_id))

    async def send_or_undo(
        self,
        command: Awaitable[None],
        envelope: Envelope,
        *,
        what: str,
        task: TaskState | None = None,
        previous_task: str | None = None,
        undo: Undo | None = None,
        refusal: str = _NOT_QUEUED,
    ) -> None:
        """Send ``command`` (a client's call, shared/rpcapi.py); if the broker does not take
        it, take back in one transaction what ``undo`` says, put the server's ``task`` back to
        ``previous_task`` and close the action as failed. Then 503 with ``refusal``."""
        try:
            await command
        except PublishFailed as exc:
            log.error("could not send the %s of %s: %s", what, envelope.server_id, exc)
            async with self.pool.acquire() as conn, conn.transaction():
                if undo is not None:
                    await undo(conn)
                if task is not None:
                    await servers.restore_task(
                        conn, envelope.server_id, task=task.value, previous=previous_task
                    )
                await actions.finish(conn, envelope.action_id, success=False, message=str(exc))
            raise ServiceUnavailable(refusal) from exc
        await self._sent([envelope])

    async def send_all_or_undo(
        self,
        commands: Sequence[tuple[Awaitable[None], Envelope]],
        *,
        what: str,
        undo: Undo,
        refusal: str = _NOT_QUEUED,
    ) -> None:
        """Send ``commands`` (each with its action's envelope) at once: a request that
        made several servers. If the broker does not take one of them, take back in one
        transaction what ``undo`` says for all of them and close every action as failed,
        then 503: the commands it did take find their servers gone and are dropped."""
        results = await asyncio.gather(*(c for c, _ in commands), return_exceptions=True)
        refused = [r for r in results if isinstance(r, PublishFailed)]
        if refused:
            log.error(
                "could not send %d %ss of %d: %s", len(refused), what, len(results), refused[0]
            )
            async with self.pool.acquire() as conn, conn.transaction():
                await undo(conn)
                for _, envelope in commands:
                    # even one a host finished already: the request took it back
                    await actions.fail(conn, envelope.action_id, str(refused[0]))
            raise ServiceUnavailable(refusal) from refused[0]
        for result in results:
            if isinstance(result, BaseException):
                raise result
        await self._sent([envelope for _, envelope in commands])

    async def check_host_up(self, conn: Conn, host: str, operation: str) -> None:
        """409 while ``host`` is down (silent, and marked down by a conductor that could have
        heard it: shared/db/hosts.py ``state``), as nova refused an action whose compute
        service was down: nothing there would carry it out until the host returns."""
        if await hosts.state(conn, host, self.settings.host_down_after_s) is HostState.DOWN:
            raise Conflict(f"Cannot '{operation}' instance while its host {host} is down.")

    async def locked(
        self, conn: Conn, ctx: RequestContext, server_id: uuid.UUID, operation: str
    ) -> LockedServer:
        """Lock the server's row for ``operation``: 404 when the caller cannot reach the
        server, 409 when its lock refuses ``operation`` to the caller."""
        row = await servers.lock(conn, server_id, ctx.server_scope)
        if row is None:
            raise NotFound("Instance could not be found.")
        check_unlocked(ctx, operation, row)
        return row

    async def record(
        self,
        conn: Conn,
        ctx: RequestContext,
        server_id: uuid.UUID,
        action: str,
        action_id: uuid.UUID,
    ) -> None:
        """The action's row in the audit trail (``os-instance-actions``), still pending, its
        command not sent yet (``_sent`` marks it once the broker took it)."""
        await actions.record(
            conn,
            action_id=action_id,
            request_id=ctx.request_id,
            server_id=server_id,
            action=action,
            tenant_id=ctx.project_id,
            user_id=ctx.user_id,
            sent=False,
        )

    async def _sent(self, envelopes: Sequence[Envelope]) -> None:
        """Mark the actions whose commands the broker took as sent, before the client hears
        so: the reaper takes back a task whose command never left a gateway that died
        (conductor/reaper.py). Should the database not take the mark, the command is on its
        way all the same, and the action is finished by its report as any other. The marks of
        concurrent requests go in one UPDATE (``actions.SentMarks``)."""
        try:
            await self.sent_marks.mark([e.action_id for e in envelopes])
        except _MARK_FAILURES as exc:
            # any failure, not only an outage: the commands are sent, and a request failing
            # here would be retried whole (a create would insert its servers again)
            log.warning("could not mark %d action(s) sent: %s", len(envelopes), exc)
