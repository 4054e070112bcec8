"""Ending a server's task from outside: what the task left half-done is cleared.

Two services end a task no agent will finish: the gateway (an operator's os-resetState) and
the conductor (its reaper, for a task whose host stopped heartbeating or that ran past its
deadline; its reconciliation, for a server its host lost). All must leave the same consistent
state behind, and what that takes is SQL alone, in the caller's transaction under the
server's row lock, with no message to send: so the rule lives here, once, beside the tables
it spans. A resize or live migration the task was in is ended the way its own module says
(``server_migrations.abandon``, ``live_migrations.abandon``), the way the conductor's step
machines end one too (conductor/steps.py).
"""

from __future__ import annotations

import uuid

from shared.db import actions, hosts, images, ipam, servers
from shared.db import live_migrations as live_db
from shared.db import server_migrations as migrations
from shared.db.hosts import Resources
from shared.db.pool import Conn
from shared.db.records import LockedServer
from shared.messages import Fault
from shared.states import ACTIONS, TaskState, VmState

#: Actions that run no task: ending a task leaves them to finish on their own.
UNTASKED = sorted(name for name, transition in ACTIONS.items() if transition.task is None)

_SNAPSHOT_TASKS = frozenset({TaskState.IMAGE_SNAPSHOT, TaskState.IMAGE_BACKUP})


async def abandon_task(
    conn: Conn,
    row: LockedServer,
    vm_state: VmState,
    *,
    why: str,
    keep: uuid.UUID | None = None,
) -> list[str]:
    """End the task of the server ``row`` (locked by the caller) and put it in ``vm_state``.

    Its pending actions (but ``keep``, the caller's own) are closed as failed with ``why``, so
    a late report of the host is refused; an image it was saving goes to ERROR; a resize or
    migration it was in is ended (status ``error``), giving back a claim its destination never
    used; a live migration under way is ended with its claims. A resize's source claim stays
    with its record while the source still keeps the original: deleting the server frees it.
    Returns what was done, for the record.
    """
    done = [f"vm_state {row.vm_state} -> {vm_state.value}"]
    if row.task_state is not None:
        done.append(f"task {row.task_state} ended")
    if row.task_state in _SNAPSHOT_TASKS:
        killed = await images.kill_saving(conn, row.id, Fault(message=why))
        done.extend(f"image {image_id} in ERROR" for image_id in killed)
    resize = await migrations.open_for(conn, row.id)
    if resize is not None:
        done.append(await migrations.abandon(conn, resize))
    live = await live_db.close_stale(conn, row.id)
    if live:
        done.append(f"{live} live migration(s) ended")
    closed = await actions.abandon_pending(conn, row.id, keep=keep, untasked=UNTASKED, message=why)
    if closed:
        done.append(f"{closed} pending action(s) closed")
    await servers.reset_state(conn, row.id, vm_state)
    return done


async def delete_locally(conn: Conn, row: LockedServer) -> None:
    """Delete the server ``row`` (locked by the caller) in the database alone: it was never
    placed, or its host is down and nobody else could finish the delete. Its claim and
    addresses are given back; a domain left on the dead host is destroyed by the agent's
    reconciliation when it comes back (conductor/reconcile.py)."""
    if row.host is not None:
        await hosts.release(conn, row.host, Resources(row.vcpus, row.ram_mb, row.disk_gb))
    await servers.mark_deleted(conn, row.id)
    await ipam.release(conn, row.id)
