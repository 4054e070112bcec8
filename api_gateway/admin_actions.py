"""What the admin actions of chapter 3 mean (guide 3.1).

Each starts as every action does (``ComputeAPI.start_action``: row lock, transition table,
the server's lock, an action record, the task state), then:

* pause, unpause, suspend, resume, createBackup, resetNetwork, injectNetworkInfo go straight
  to the server's host (``send_or_undo``); the host's report ends them;
* migrate goes to the conductor as a resize to the same flavor, which must change host
  (conductor/resize.py does the rest: VERIFY_RESIZE, then confirmResize or revertResize);
* lock, unlock and os-resetState are done in the database, in the same transaction, and
  never reach a host.

Who may call which is api_gateway/policy.py's business, checked before any of this.
"""

from __future__ import annotations

import uuid
from typing import TypedDict

import asyncpg

from api_gateway import quotas
from api_gateway.compute import ComputeAPI
from api_gateway.context import RequestContext
from api_gateway.schemas.admin_actions import CreateBackup
from api_gateway.server_actions import SnapshotPlan, Undo, instance_spec
from shared import bus as bus_mod
from shared.config import Settings
from shared.db import actions, hosts, images, servers
from shared.db import server_migrations as migrations
from shared.db.abandon import abandon_task
from shared.db.hosts import Ratios, Resources
from shared.db.pool import Conn
from shared.errors import Conflict, Invalid, NotPermitted
from shared.messages import (
    ActionMessage,
    BackupServer,
    InjectNetworkInfo,
    NetworkAddress,
    PauseServer,
    ResetNetwork,
    ResizeServer,
    ResumeServer,
    SuspendServer,
    UnpauseServer,
)
from shared.states import ACTIONS, VmState

_POWER_COMMANDS: dict[str, type[PauseServer | UnpauseServer | SuspendServer | ResumeServer]] = {
    "pause": PauseServer,
    "unpause": UnpauseServer,
    "suspend": SuspendServer,
    "resume": ResumeServer,
}

_NETWORK_COMMANDS: dict[str, type[ResetNetwork | InjectNetworkInfo]] = {
    "resetNetwork": ResetNetwork,
    "injectNetworkInfo": InjectNetworkInfo,
}


class AdminActions:
    def __init__(self, compute: ComputeAPI) -> None:
        self.compute = compute
        self.settings = compute.settings

    # --- on the server's host ------------------------------------------------------------

    async def power(self, ctx: RequestContext, server_id: str, action: str) -> None:
        """pause (ACTIVE -> PAUSED), unpause (PAUSED -> ACTIVE), suspend (ACTIVE ->
        SUSPENDED), resume (SUSPENDED -> ACTIVE); each with its task while the host works."""
        command = _POWER_COMMANDS[action]
        row, action_id = await self.compute.start_action(
            ctx, server_id, action, prepare=_OnAHost(action).prepare
        )
        await self._send(
            row, action, command(**_envelope(ctx, row, action_id), domain_name=_domain(row))
        )

    async def network(self, ctx: RequestContext, server_id: str, action: str) -> None:
        """resetNetwork, injectNetworkInfo: the host re-applies the server's fixed addresses;
        no task, no status change, any state."""
        command = _NETWORK_COMMANDS[action]
        plan = _NetworkPlan(action)
        row, action_id = await self.compute.start_action(
            ctx, server_id, action, prepare=plan.prepare
        )
        await self._send(
            row,
            action,
            command(
                **_envelope(ctx, row, action_id),
                domain_name=_domain(row),
                addresses=plan.addresses,
            ),
        )

    async def create_backup(
        self, ctx: RequestContext, server_id: str, request: CreateBackup
    ) -> uuid.UUID:
        """A backup image (SAVING -> ACTIVE), made as a snapshot is; once it is saved the
        conductor deletes the server's oldest backups of that type beyond ``rotation``.
        Returns the new image's id."""
        quotas.check_metadata_items(self.settings, len(request.metadata))
        plan = SnapshotPlan(
            ctx,
            request.name,
            request.metadata,
            backup=images.Backup(request.backup_type, request.rotation),
        )
        row, action_id = await self.compute.start_action(
            ctx, server_id, "createBackup", prepare=plan.prepare
        )
        await self._send(
            row,
            "createBackup",
            BackupServer(
                **_envelope(ctx, row, action_id),
                domain_name=_domain(row),
                image_id=plan.image_id,
                disk_format=plan.disk_format,
            ),
            undo=plan.undo,
        )
        return plan.image_id

    # --- through the conductor -----------------------------------------------------------

    async def migrate(self, ctx: RequestContext, server_id: str) -> None:
        """ACTIVE -> RESIZE -> VERIFY_RESIZE on another host chosen by the conductor."""
        plan = _MigrationPlan(self.settings)
        row, action_id = await self.compute.start_action(
            ctx, server_id, "migrate", prepare=plan.prepare
        )
        await self._send(
            row,
            "migrate",
            ResizeServer(**_envelope(ctx, row, action_id), migration_id=plan.migration_id),
            routing_key=bus_mod.CONDUCTOR,
            undo=plan.undo,
        )

    # --- in the database only ------------------------------------------------------------

    async def lock(self, ctx: RequestContext, server_id: str) -> None:
        await self.compute.start_action(ctx, server_id, "lock", prepare=_LockPlan(ctx).lock)

    async def unlock(self, ctx: RequestContext, server_id: str) -> None:
        await self.compute.start_action(ctx, server_id, "unlock", prepare=_LockPlan(ctx).unlock)

    async def reset_state(self, ctx: RequestContext, server_id: str, vm_state: VmState) -> None:
        """Force ACTIVE or ERROR with no task, whatever the server was doing (the operator's
        rescue of a server stuck in a task)."""
        await self.compute.start_action(
            ctx, server_id, "os-resetState", prepare=_ResetPlan(ctx, vm_state).prepare
        )

    # --- helpers -------------------------------------------------------------------------

    async def _send(
        self,
        row: asyncpg.Record,
        action: str,
        command: ActionMessage,
        *,
        routing_key: str | None = None,
        undo: Undo | None = None,
    ) -> None:
        task = ACTIONS[action].task
        await self.compute.send_or_undo(
            routing_key or bus_mod.compute_queue(row["host"]),
            command,
            task=task.value if task is not None else None,
            previous_task=row["task_state"],
            undo=undo,
        )


# --- what each action checks and writes under the row lock -----------------------------------


class _OnAHost:
    """A command for the server's host: a server that never reached one has nothing an agent
    could act on (409)."""

    def __init__(self, action: str) -> None:
        self.action = action

    async def prepare(self, conn: Conn, row: asyncpg.Record, action_id: uuid.UUID) -> None:
        if row["host"] is None:
            raise Conflict(f"Cannot '{self.action}' an instance that is on no host")


class _NetworkPlan(_OnAHost):
    """Gathers the fixed addresses the host is to apply (agents never read the database)."""

    def __init__(self, action: str) -> None:
        super().__init__(action)
        self.addresses: list[NetworkAddress] = []

    async def prepare(self, conn: Conn, row: asyncpg.Record, action_id: uuid.UUID) -> None:
        await super().prepare(conn, row, action_id)
        server = await servers.get(conn, row["id"], None)
        assert server is not None, "locked in this transaction"
        self.addresses = [NetworkAddress.model_validate(a) for a in server["addresses"]]


class _MigrationPlan:
    """Records the migration as a resize whose new flavor is the server's own; 400 when no
    other host could ever take the server (a one-host cloud has nowhere to migrate to)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.migration_id = uuid.uuid4()

    async def prepare(self, conn: Conn, row: asyncpg.Record, action_id: uuid.UUID) -> None:
        if row["host"] is None:
            raise Conflict("Cannot 'migrate' an instance that is on no host")
        need = Resources(row["vcpus"], row["ram_mb"], row["disk_gb"])
        ratios = Ratios(
            self.settings.cpu_allocation_ratio,
            self.settings.ram_allocation_ratio,
            self.settings.disk_allocation_ratio,
        )
        if not await hosts.could_ever_fit(
            conn, need, ratios, self.settings.host_down_after_s, exclude=[row["host"]]
        ):
            raise Invalid(
                f"No compute host other than {row['host']} can take the server: "
                "a migration needs another host that is up and big enough for its flavor."
            )
        server = await servers.get(conn, row["id"], None)
        assert server is not None, "locked in this transaction"
        spec = await instance_spec(conn, server)
        await migrations.insert(
            conn,
            migrations.NewMigration(
                id=self.migration_id,
                server_id=row["id"],
                action_id=action_id,
                source_host=row["host"],
                instance=spec,
                new_flavor=spec.flavor,
            ),
        )

    async def undo(self, conn: Conn) -> None:
        await migrations.discard(conn, self.migration_id)


class _LockPlan:
    """lock: the server refuses state changes from non-administrators until unlocked; it is
    recorded as locked by the caller. A lock already held by someone else stays theirs,
    unless an administrator takes it over. unlock: only an administrator or the user who
    locked it (403 otherwise)."""

    def __init__(self, ctx: RequestContext) -> None:
        self.ctx = ctx

    async def lock(self, conn: Conn, row: asyncpg.Record, action_id: uuid.UUID) -> None:
        if not row["locked"] or self.ctx.is_admin:
            await servers.set_locked(conn, row["id"], locked_by=self.ctx.user_id)
        await actions.finish(conn, action_id, success=True)

    async def unlock(self, conn: Conn, row: asyncpg.Record, action_id: uuid.UUID) -> None:
        if row["locked"]:
            if not self.ctx.is_admin and row["locked_by"] != self.ctx.user_id:
                raise NotPermitted(
                    f"Instance {row['id']} was locked by another user; only that user or an "
                    "administrator may unlock it."
                )
            await servers.set_locked(conn, row["id"], locked_by=None)
        await actions.finish(conn, action_id, success=True)


class _ResetPlan:
    """os-resetState: the server's vm_state becomes the one asked for and its task ends;
    what the ended task left half-done is cleared as shared/db/abandon.py says."""

    def __init__(self, ctx: RequestContext, vm_state: VmState) -> None:
        self.ctx = ctx
        self.vm_state = vm_state

    async def prepare(self, conn: Conn, row: asyncpg.Record, action_id: uuid.UUID) -> None:
        why = f"abandoned: the server's state was reset by {self.ctx.user_id}"
        done = await abandon_task(conn, row, self.vm_state, why=why, keep=action_id)
        await actions.finish(conn, action_id, success=True, message="; ".join(done))


# --- small helpers --------------------------------------------------------------------------


class _Envelope(TypedDict):
    request_id: str
    server_id: uuid.UUID
    action_id: uuid.UUID


def _envelope(ctx: RequestContext, row: asyncpg.Record, action_id: uuid.UUID) -> _Envelope:
    return {"request_id": ctx.request_id, "server_id": row["id"], "action_id": action_id}


def _domain(row: asyncpg.Record) -> str:
    return f"instance-{row['id']}"
