"""What ``os-migrateLive`` means at the gateway (guide 3.1 `os-migrateLive`).

A live migration starts as every action does (``ComputeAPI.start_action``: row lock, the
transition table — only an ACTIVE server with no task, else 409 — the server's lock, an
action record, task ``migrating``), and is recorded as a live migration to the host the
request names. What the gateway can know it checks at once and answers with 400, as the
reference implementation did: the destination is not the server's own host, exists, is
enabled and alive, runs the same hypervisor and has room now. The conductor checks all of
that again when it claims the room (conductor/live_migration.py), and drives the two hosts
from there; the server stays ACTIVE (status MIGRATING) and running until it runs on the
destination.

Who may ask (administrators, by default) is api_gateway/policy.py's business, checked by the
controller before any of this.
"""

from __future__ import annotations

import uuid

import asyncpg

from api_gateway.compute import ComputeAPI
from api_gateway.context import RequestContext
from api_gateway.schemas.live_migration import LiveMigrate
from api_gateway.server_actions import instance_spec
from shared import bus as bus_mod
from shared.config import Settings
from shared.db import live_migrations as live_db
from shared.db import servers
from shared.db.hosts import Ratios, Resources
from shared.db.pool import Conn
from shared.errors import Conflict, Invalid
from shared.messages import LiveMigrateServer
from shared.states import TaskState

#: the action's name, in the transition table, the policy and the audit trail
ACTION = "os-migrateLive"


class LiveMigrations:
    def __init__(self, compute: ComputeAPI) -> None:
        self.compute = compute
        self.settings = compute.settings

    async def migrate(self, ctx: RequestContext, server_id: str, request: LiveMigrate) -> None:
        """ACTIVE -> MIGRATING -> ACTIVE on ``request.host``, through the conductor."""
        plan = _LiveMigrationPlan(self.settings, request)
        row, action_id = await self.compute.start_action(
            ctx, server_id, ACTION, prepare=plan.prepare
        )
        await self.compute.send_or_undo(
            bus_mod.CONDUCTOR,
            LiveMigrateServer(
                request_id=ctx.request_id,
                server_id=row["id"],
                action_id=action_id,
                migration_id=plan.migration_id,
            ),
            task=TaskState.MIGRATING.value,
            previous_task=row["task_state"],
            undo=plan.undo,
        )


class _LiveMigrationPlan:
    """Checks the destination, then records the live migration (``accepted``) with what its
    steps need: the server as it is, both hosts, the request's options."""

    def __init__(self, settings: Settings, request: LiveMigrate) -> None:
        self.settings = settings
        self.request = request
        self.migration_id = uuid.uuid4()

    async def prepare(self, conn: Conn, row: asyncpg.Record, action_id: uuid.UUID) -> None:
        if row["host"] is None:
            raise Conflict(f"Cannot '{ACTION}' an instance that is on no host")
        # one an os-resetState interrupted is over: its claim must not stay held (nor count
        # against the destination's room)
        await live_db.close_stale(conn, row["id"])
        await self._check_destination(conn, row)
        server = await servers.get(conn, row["id"], None)
        assert server is not None, "locked in this transaction"
        await live_db.insert(
            conn,
            live_db.NewLiveMigration(
                id=self.migration_id,
                server_id=row["id"],
                action_id=action_id,
                source_host=row["host"],
                dest_host=self.request.host,
                instance=await instance_spec(conn, server),
                block_migration=self.request.block_migration,
                disk_over_commit=self.request.disk_over_commit,
            ),
        )

    async def _check_destination(self, conn: Conn, row: asyncpg.Record) -> None:
        """400 when the destination cannot take the server now (a look, not a claim: the
        conductor claims, and may still find it full)."""
        settings = self.settings
        refusal = await live_db.target_refusal(
            conn,
            server_id=row["id"],
            source=row["host"],
            dest=self.request.host,
            down_after_s=settings.host_down_after_s,
        ) or await live_db.room_refusal(
            conn,
            self.request.host,
            Resources(row["vcpus"], row["ram_mb"], row["disk_gb"]),
            Ratios(
                settings.cpu_allocation_ratio,
                settings.ram_allocation_ratio,
                settings.disk_allocation_ratio,
            ),
            check_disk=not self.request.disk_over_commit,
        )
        if refusal is not None:
            raise Invalid(refusal)

    async def undo(self, conn: Conn) -> None:
        await live_db.discard(conn, self.migration_id)
