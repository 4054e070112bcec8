"""lock, unlock and os-resetState (guide 3.1): done in the database, in the transaction that
starts them; no host ever hears of them, and their record is closed at once."""

from __future__ import annotations

from api_gateway.compute.actions.plan import InDatabase, Locked
from shared.db import actions, servers
from shared.db.abandon import abandon_task
from shared.errors import NotPermitted
from shared.states import VmState


class Lock(InDatabase):
    """The server refuses state changes from non-administrators until unlocked; it is
    recorded as locked by the caller. A lock already held by someone else stays theirs,
    unless an administrator takes it over."""

    action = "lock"

    async def prepare(self, locked: Locked) -> None:
        ctx, row = locked.ctx, locked.row
        if not row.locked or ctx.is_admin:
            await servers.set_locked(locked.conn, row.id, locked_by=ctx.user_id)
        await actions.finish(locked.conn, locked.action_id, success=True)


class Unlock(InDatabase):
    """Only an administrator or the user who locked the server may unlock it (403)."""

    action = "unlock"

    async def prepare(self, locked: Locked) -> None:
        ctx, row = locked.ctx, locked.row
        if row.locked:
            if not ctx.is_admin and row.locked_by != ctx.user_id:
                raise NotPermitted(
                    f"Instance {row.id} was locked by another user; only that user or an "
                    "administrator may unlock it."
                )
            await servers.set_locked(locked.conn, row.id, locked_by=None)
        await actions.finish(locked.conn, locked.action_id, success=True)


class ResetState(InDatabase):
    """ACTIVE or ERROR with no task, whatever the server was doing (the operator's rescue of
    a server stuck in a task); what the ended task left half-done is cleared as
    shared/db/abandon.py says."""

    action = "os-resetState"

    def __init__(self, vm_state: VmState) -> None:
        self.vm_state = vm_state

    async def prepare(self, locked: Locked) -> None:
        why = f"abandoned: the server's state was reset by {locked.ctx.user_id}"
        done = await abandon_task(
            locked.conn, locked.row, self.vm_state, why=why, keep=locked.action_id
        )
        await actions.finish(locked.conn, locked.action_id, success=True, message="; ".join(done))
