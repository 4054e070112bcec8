"""The reaper: no server stays in a task that nobody will finish.

A task ends when its agent reports. When the agent died for good, its host lost power, a
message went to the dead-letter queue or a hypervisor call hangs, that report never comes.
Every ``interval_s`` each conductor looks for servers whose task has run past its deadline
(per task, configurable: a snapshot may take an hour, a reboot should not) or whose host has
stopped heartbeating, and resolves each one:

* a delete is finished: by the host when it is alive (the destroy is sent again: destroying
  twice is harmless), else in the database alone, like the gateway's delete on a dead host;
  the agent's reconciliation destroys the domain when the host comes back;
* a task whose command never reached the broker (its gateway died between its commit and
  the publish, so the client never got an answer: the action is still marked unsent,
  migration 0023) is taken back, as that gateway would have done had the broker refused
  the command: a build's server is deleted, any other server stays as it was;
* any other task is abandoned as os-resetState would (shared/db/abandon.py), and the server
  goes to ERROR with a fault that says what happened. Nothing else is safe to retry blindly:
  a half-done resize or rebuild could be repeated on a disk that already changed.

Conductors reap concurrently without coordination: each server is decided in its own
transaction under its row lock (``SKIP LOCKED``), and only if its task is still the one that
was found stale, so a report arriving meanwhile wins and two reapers never both act.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

import asyncpg

from conductor.hearing import Hearing
from shared.bus import Bus, PublishFailed
from shared.db import actions, servers, stale_tasks
from shared.db.abandon import UNTASKED, abandon_task, delete_locally
from shared.db.pool import Conn
from shared.db.records import LockedServer
from shared.logging import current_request_id, request_context
from shared.messages import Fault
from shared.periodic import Periodic
from shared.rpcapi import ComputeClient, Envelope
from shared.states import TaskState, VmState

log = logging.getLogger(__name__)

#: The user the reaper records its own actions as (a delete sent again with no pending action).
REAPER = "stratus-reaper"


@dataclass(frozen=True)
class Stale:
    """A server whose task is due to be resolved, and why."""

    server_id: uuid.UUID
    task: str
    started_at: datetime
    host: str | None
    host_down: bool
    deadline_s: float
    past_deadline: bool = False

    @property
    def why(self) -> str:
        if self.host_down:
            return f"host {self.host} stopped heartbeating"
        return f"it ran past its deadline of {self.deadline_s:g} s"

    @property
    def reason(self) -> str:
        return f"task {self.task} abandoned: {self.why}"


class Reaper:
    def __init__(
        self,
        pool: asyncpg.Pool,
        bus: Bus,
        *,
        interval_s: float,
        default_deadline_s: float,
        deadlines: Mapping[str, float],
        host_down_after_s: float,
        hearing: Hearing | None = None,
    ) -> None:
        self.pool = pool
        #: whether silence may be judged (conductor/hearing.py; None: always)
        self.hearing = hearing
        self.bus = bus
        self.interval_s = interval_s
        self.default_deadline_s = default_deadline_s
        self.deadlines = dict(deadlines)
        self.host_down_after_s = host_down_after_s
        self._periodic = Periodic(
            "look for stuck servers",
            self.reap,
            interval_s=interval_s,
            tolerated=(OSError, asyncpg.PostgresError, asyncpg.InterfaceError),
        )

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    async def reap(self) -> int:
        """Resolve every server due now; how many were resolved."""
        resolved = 0
        for stale in await self.find_stale():
            try:
                if await self.resolve(stale):
                    resolved += 1
            except PublishFailed:
                log.warning("could not send the destroy of %s again; next round", stale.server_id)
        return resolved

    async def find_stale(self, limit: int = 500) -> list[Stale]:
        """Servers whose task ran past its deadline, or started a while ago on a host that
        stopped heartbeating (the grace keeps a task just sent to a host that is about to be
        marked up again from being reaped at once). While this conductor could not have
        heard heartbeats lately (conductor/hearing.py), a host's silence condemns no task:
        only deadlines do."""
        rows = await stale_tasks.find(
            self.pool,
            deadlines=self.deadlines,
            default_deadline_s=self.default_deadline_s,
            host_down_after_s=self.host_down_after_s,
            limit=limit,
        )
        found = [
            Stale(
                server_id=r.id,
                task=r.task_state,
                started_at=r.task_started_at,
                host=r.host,
                host_down=r.host_down,
                deadline_s=r.deadline_s,
                past_deadline=r.past_deadline,
            )
            for r in rows
        ]
        if self.hearing is None or self.hearing.trusted():
            return found
        kept = [s for s in found if s.past_deadline]
        if len(kept) < len(found):
            log.info(
                "not judging %d task(s) on their hosts' silence: %s",
                len(found) - len(kept),
                self.hearing.why_not(),
            )
        return [replace(s, host_down=False) for s in kept]

    async def resolve(self, stale: Stale) -> bool:
        """Resolve one server, if it is still as it was found; False when it moved on.

        It is the reaper's own request, with an id of its own: on its log lines, on the
        action it records and on the destroy it sends again."""
        with request_context(f"req-{uuid.uuid4()}"):
            return await self._resolve(stale)

    async def _resolve(self, stale: Stale) -> bool:
        resend: Envelope | None = None
        async with self.pool.acquire() as conn, conn.transaction():
            row = await stale_tasks.lock_if_unchanged(
                conn, stale.server_id, stale.task, stale.started_at
            )
            if row is None:
                return False
            if stale.task == TaskState.DELETING:
                resend = await self._finish_delete(conn, row, stale)
            else:
                await self._abandon(conn, row, stale)
        if resend is not None and stale.host is not None:
            await ComputeClient(self.bus, stale.host).destroy_server(resend)
        return True

    async def _abandon(self, conn: Conn, row: LockedServer, stale: Stale) -> None:
        if not stale.host_down and await actions.unsent_pending(conn, row.id, UNTASKED):
            await self._take_back(conn, row, stale)
            return
        done = await abandon_task(conn, row, VmState.ERROR, why=stale.reason)
        await servers.add_fault(conn, row.id, Fault(code=500, message=stale.reason))
        log.warning("server %s is in ERROR: %s (%s)", row.id, stale.reason, "; ".join(done))

    async def _take_back(self, conn: Conn, row: LockedServer, stale: Stale) -> None:
        """The task's command never reached the broker: the gateway that accepted it died
        between its commit and the publish, before it answered. Undo it as that gateway
        would have had the broker refused the command: a build is taken back (the server
        was never placed), any other task ends and the server stays as it was."""
        why = (
            f"task {stale.task} taken back: the gateway that accepted it stopped before "
            "sending its command"
        )
        if row.vm_state == VmState.BUILDING:
            await delete_locally(conn, row)
            await actions.abandon_pending(conn, row.id, keep=None, untasked=[], message=why)
            log.warning("server %s deleted: %s", row.id, why)
            return
        done = await abandon_task(conn, row, VmState(row.vm_state), why=why)
        log.warning("server %s: %s (%s)", row.id, why, "; ".join(done))

    async def _finish_delete(self, conn: Conn, row: LockedServer, stale: Stale) -> Envelope | None:
        """Finish a stuck delete: locally when the host is gone, else by asking it again
        (the destroy's envelope is returned, to be sent once this transaction commits)."""
        pending = await actions.latest_pending(conn, row.id, "delete")
        if stale.host is None or stale.host_down:
            await delete_locally(conn, row)
            done = f"finished in the database alone: {stale.why}"
            if pending is not None:
                await actions.finish(conn, pending, success=True, message=done)
            log.warning("delete of server %s %s", row.id, done)
            return None
        if pending is None:
            pending = uuid.uuid4()
            await actions.record(
                conn,
                action_id=pending,
                request_id=current_request_id(),
                server_id=row.id,
                action="delete",
                tenant_id=row.tenant_id,
                user_id=REAPER,
            )
        # a new deadline for the second try
        await stale_tasks.restart_deadline(conn, row.id)
        log.warning("sending the destroy of server %s again: %s", row.id, stale.reason)
        return Envelope(current_request_id(), row.id, pending)
