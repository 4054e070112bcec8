"""lock, unlock and os-resetState (guide 3.1): done in the database, in the transaction that
starts them; no host ever hears of them, and their record is closed at once."""

from __future__ import annotations

from api_gateway.auth.policy import configured
from api_gateway.compute.actions.plan import InDatabase, Locked
from shared.db import actions, servers
from shared.db.abandon import abandon_task
from shared.errors import NotPermitted
from shared.states import VmState


def _role(locked: Locked) -> str:
    """The kind of lock holder the caller is, as nova 2013.2 records it."""
    return "admin" if locked.ctx.is_admin else "owner"


class Lock(InDatabase):
    """The server refuses state changes from non-administrators until unlocked; it is
    recorded as locked by the caller, as its owner or an administrator (nova 2013.2's
    ``locked_by``). A lock already held by someone else stays theirs, unless an
    administrator takes it over."""

    action = "lock"

    async def prepare(self, locked: Locked) -> None:
        ctx, row = locked.ctx, locked.row
        if not row.locked or ctx.is_admin:
            await servers.set_locked(locked.conn, row.id, locked_by=ctx.user_id, role=_role(locked))
        await actions.finish(locked.conn, locked.action_id, success=True)


class Unlock(InDatabase):
    """A lock held by the other kind of caller (an administrator's, for an owner) is lifted
    only as ``unlock_override`` allows (nova 2013.2; administrators by default); an owner's
    lock only by the member who took it (or an administrator). 403 otherwise."""

    action = "unlock"

    async def prepare(self, locked: Locked) -> None:
        ctx, row = locked.ctx, locked.row
        if row.locked:
            holder = row.locked_by_role or "admin"
            if holder != _role(locked):
                policy = configured(locked.settings.policy)
                if not policy.allows(ctx, "unlock_override", project_id=row.tenant_id):
                    by = "an administrator" if holder == "admin" else "its owner"
                    raise NotPermitted(
                        f"Instance {row.id} was locked by {by}; policy doesn't allow "
                        "unlock_override to be performed."
                    )
            elif not ctx.is_admin and row.locked_by != ctx.user_id:
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
