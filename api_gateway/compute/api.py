"""The compute API: what creating, reading, changing and deleting servers, and acting on them,
mean. Controllers call it once the policy allowed the request (api_gateway/auth/policy.py);
it refuses what the server's state and lock forbid.

Writes run as transactions.py says: one transaction, then a command on the bus
(shared/rpcapi.py), and only once the broker has confirmed it does the client get its 202;
if the command cannot be sent, the transaction's effect is undone.
"""

from __future__ import annotations

import logging
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from api_gateway.compute import quotas
from api_gateway.compute.actions.plan import ActionPlan
from api_gateway.compute.checks import (
    check_allowed,
    check_could_fit,
    check_fits,
    check_metadata_writable,
    marker_uuid,
    parse_uuid,
    ratios,
)
from api_gateway.compute.metadata import MetadataEdit, edited_for
from api_gateway.compute.passwords import generate_password, random_string
from api_gateway.compute.specs import injected_files
from api_gateway.compute.transactions import Transactions
from api_gateway.context import RequestContext
from api_gateway.schemas.servers import ServerCreate, ServerUpdate
from shared import rpcapi
from shared.bus import PublishFailed
from shared.db import actions, creates, flavors, hosts, images, keypairs, servers
from shared.db import metadata as metadata_db
from shared.db.abandon import delete_locally
from shared.db.pool import Conn, Executor
from shared.db.records import Flavor, Image, Keypair, LockedServer, Server, ServerEntry
from shared.db.servers import ServerFilters
from shared.errors import Invalid, NotFound, ServiceUnavailable
from shared.rpcapi import Envelope
from shared.states import ACTIONS, TaskState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CreatedServers:
    """What a create request made: its servers (in name order), the password they share and
    the reservation they were made in (nova's multiple create)."""

    ids: list[uuid.UUID]
    admin_pass: str
    reservation_id: str


class ComputeAPI(Transactions):
    """What the controllers call: reads, the server's own writes, and server actions."""

    # --- reads ---------------------------------------------------------------------------

    async def get_server(self, ctx: RequestContext, server_id: str) -> Server:
        row = await servers.get(self.pool, parse_uuid(server_id, "Instance"), ctx.server_scope)
        if row is None:
            raise NotFound("Instance could not be found.")
        return row

    async def list_servers(
        self,
        ctx: RequestContext,
        *,
        limit: int,
        marker: str | None,
        filters: ServerFilters | None,
        all_projects: bool = False,
        project: str | None = None,
    ) -> list[ServerEntry]:
        """One page of the project's servers matching ``filters`` (None: nothing can match,
        the page is empty; the marker is still checked); every project's for an
        administrator who asks (``all_tenants``, as in nova), or those of ``project`` if the
        administrator also names one (``tenant_id``, nova's filter). Without
        ``all_projects``, or for a member, ``project`` is ignored: the usual scope holds."""
        tenant, marker_id = await self._list_scope(ctx, marker, all_projects, project)
        if filters is None:
            return []
        try:
            return await servers.list_page(
                self.pool, tenant, marker=marker_id, limit=limit, filters=filters
            )
        except asyncpg.InvalidRegularExpressionError as exc:
            raise Invalid(f"Invalid name filter (not a regular expression): {exc}") from None

    async def list_server_versions(
        self,
        ctx: RequestContext,
        *,
        limit: int,
        marker: str | None,
        filters: ServerFilters | None,
        all_projects: bool = False,
        project: str | None = None,
    ) -> servers.PageVersions:
        """The ids and versions of the page ``list_servers`` would return (same arguments,
        same refusals): all the detailed list needs when it has the page rendered already."""
        tenant, marker_id = await self._list_scope(ctx, marker, all_projects, project)
        if filters is None:
            return (), ()
        try:
            return await servers.page_versions(
                self.pool, tenant, marker=marker_id, limit=limit, filters=filters
            )
        except asyncpg.InvalidRegularExpressionError as exc:
            raise Invalid(f"Invalid name filter (not a regular expression): {exc}") from None

    async def _list_scope(
        self, ctx: RequestContext, marker: str | None, all_projects: bool, project: str | None
    ) -> tuple[str | None, uuid.UUID | None]:
        """The project a list covers (None: every project) and its marker's id, checked."""
        tenant: str | None = ctx.project_id
        if all_projects and ctx.is_admin:
            tenant = project or None
        marker_id = None
        if marker is not None:
            marker_id = marker_uuid(marker)
            if not await servers.exists(self.pool, marker_id, tenant):
                raise Invalid(f"marker [{marker}] not found")
        return tenant, marker_id

    async def load_servers(self, ctx: RequestContext, server_ids: list[uuid.UUID]) -> list[Server]:
        """Full rows of servers a list page named (only those the caller may reach)."""
        rows = await servers.get_many(self.pool, server_ids)
        scope = ctx.server_scope
        return [r for r in rows if scope is None or r.tenant_id == scope]

    async def server_metadata(self, ctx: RequestContext, server_id: str) -> dict[str, str]:
        """The server's metadata, in key order."""
        row = await self.get_server(ctx, server_id)
        return dict(sorted(row.metadata.items()))

    async def resolve_flavor(self, flavor_ref: str, conn: Executor | None = None) -> Flavor:
        """The flavor a request names, else 400 (nova's answer for a bad flavorRef); read
        on ``conn`` when given (else on the pool)."""
        return _found_flavor(await flavors.get(self.pool if conn is None else conn, flavor_ref))

    async def resolve_image(
        self, ctx: RequestContext, image_ref: str, conn: Executor | None = None
    ) -> Image:
        """An active image the project may build from, else 400 (as the reference
        implementation answered for a missing image, rather than 404); read on ``conn``
        when given (else on the pool)."""
        image_id = _image_id(image_ref)
        image = None
        if image_id is not None:
            image = await images.get(self.pool if conn is None else conn, image_id, ctx.project_id)
        return _found_image(image, image_ref, image_id)

    # --- the server's own labels ---------------------------------------------------------

    async def update_server(
        self, ctx: RequestContext, server_id: str, update: ServerUpdate
    ) -> Server:
        """Rename the server or change its access addresses (Table 2.2), in any state: these
        are the user's labels, no host is involved. Returns the updated server."""
        sid = parse_uuid(server_id, "Instance")
        async with self.pool.acquire() as conn, conn.transaction():
            await self.locked(conn, ctx, sid, "servers:update")
            await servers.update_fields(conn, sid, update.changes())
            row = await servers.get(conn, sid, ctx.server_scope)
        assert row is not None  # updated in this transaction
        return row

    async def edit_server_metadata(
        self, ctx: RequestContext, server_id: str, edit: MetadataEdit
    ) -> dict[str, str]:
        """Apply ``edit`` to the server's metadata under its row lock; returns the new set.
        Only in the states the reference implementation allowed (any task may run)."""
        sid = parse_uuid(server_id, "Instance")
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self.locked(conn, ctx, sid, "servers:metadata")
            check_metadata_writable(row, edit)
            current = await metadata_db.read(conn, metadata_db.Table.SERVER, sid)
            new = await edited_for(conn, self.settings, ctx.project_id, edit, current)
            await metadata_db.write(conn, metadata_db.Table.SERVER, sid, current, new)
        return new

    # --- create and delete ---------------------------------------------------------------

    async def create_servers(self, ctx: RequestContext, request: ServerCreate) -> CreatedServers:
        """Record the servers a create asks for (BUILD), all or none, and ask the conductor
        to place and build each: as many as ``max_count`` when the quota has room, at
        least ``min_count`` (nova's multiple create)."""
        # one connection for the reads and the writes (a borrow from the pool each costs the
        # gateway more CPU than the read it serves), given back before the builds are sent:
        # sending may borrow again (to take the batch back, to mark it sent)
        image_id = _image_id(request.image_ref)
        async with self.pool.acquire() as conn:
            found = await creates.read(
                conn,
                flavor_id=request.flavor_ref,
                image_id=image_id,
                project_id=ctx.project_id,
                user_id=ctx.user_id,
                key_name=_key_name(request.key_name),
                ratios=ratios(self.settings),
                down_after_s=self.settings.host_down_after_s,
            )
            # the refusals in the order of the reads they used to follow one by one
            project_quotas = quotas.defaults(self.settings) | found.overrides
            quotas.check_create_request(project_quotas, request)
            flavor = _found_flavor(found.flavor)
            image = _found_image(found.image, request.image_ref, image_id)
            check_fits(flavor, image)
            key = _found_key(found.key, request.key_name)
            reservation_id = _reservation_id()

            def make(count: int) -> list[servers.NewServer]:
                return [
                    _new_server(ctx, request, flavor, image, key, reservation_id, (n, count))
                    for n in range(1, count + 1)
                ]

            batch, envelopes = await self._record_create(
                conn, ctx, request.count_range, (flavor, found.fits), project_quotas, make
            )

        placed: dict[str, list[uuid.UUID]] = {}

        async def forget(conn: Conn) -> None:
            """Take the batch back: a build the broker took may have been placed (even
            built) already, so each server is deleted as one whose host cannot be asked,
            its claim and addresses given back, and its host told to destroy it below."""
            for server in batch:
                row = await servers.lock(conn, server.id, None)
                if row is not None:
                    if row.host is not None:
                        placed.setdefault(row.host, []).append(row.id)
                    await delete_locally(conn, row)

        admin_pass = request.admin_pass or generate_password()
        conductor = self.clients.conductor()
        builds = [
            conductor.build_server(
                env, rpcapi.instance_spec(server, flavor, image, server.guest), admin_pass
            )
            for server, env in zip(batch, envelopes, strict=True)
        ]
        try:
            await self.send_all_or_undo(
                list(zip(builds, envelopes, strict=True)),
                what="build",
                undo=forget,
                refusal="The build could not be queued; try again later.",
            )
        except ServiceUnavailable:
            await self._purge(placed)
            raise
        return CreatedServers([server.id for server in batch], admin_pass, reservation_id)

    async def _purge(self, placed: dict[str, list[uuid.UUID]]) -> None:
        """Ask each host to destroy the servers of a taken-back batch it may have built. The
        broker may refuse this too: then the host's next report has the conductor purge them
        (conductor/reconcile.py), as it does any deleted server's domain."""
        for host, server_ids in placed.items():
            try:
                await self.clients.compute(host).purge_servers(server_ids)
            except PublishFailed as exc:
                log.warning("cannot ask %s to destroy %s now: %s", host, server_ids, exc)

    async def _record_create(
        self,
        conn: Conn,
        ctx: RequestContext,
        counts: tuple[int, int],
        sized: tuple[Flavor, bool | None],
        project_quotas: dict[str, int],
        make: Callable[[int], list[servers.NewServer]],
    ) -> tuple[list[servers.NewServer], list[Envelope]]:
        """Insert the servers ``make`` makes (as many as the quotas leave room for, within
        ``counts``) after the refusals of the instance quotas, then of the capacity
        (``sized``: the flavor, and whether some host could ever take it).

        When a quota applies, the count is made under the project's quota lock, in the
        transaction that inserts: concurrent creates take turns (quotas.check_instances).
        When none does, there is nothing to count: a lone server's insert is one statement,
        atomic on its own, and needs no BEGIN and COMMIT round trips around it."""
        flavor, fits = sized
        fewest, most = counts
        if not quotas.limits_servers(project_quotas, vcpus=flavor.vcpus, ram_mb=flavor.ram_mb):
            check_could_fit(fits, flavor.id)
            batch = make(most)
            if len(batch) == 1:
                return batch, [await self._insert(conn, ctx, batch[0])]
            async with conn.transaction():
                return batch, [await self._insert(conn, ctx, server) for server in batch]
        async with conn.transaction():
            count = await quotas.check_instances(
                conn,
                self.settings,
                ctx.project_id,
                vcpus=flavor.vcpus,
                ram_mb=flavor.ram_mb,
                counts=(fewest, most),
                known=project_quotas,
            )
            check_could_fit(fits, flavor.id)
            batch = make(count)
            return batch, [await self._insert(conn, ctx, server) for server in batch]

    async def _insert(self, conn: Conn, ctx: RequestContext, server: servers.NewServer) -> Envelope:
        """Insert a new server and its create action (one statement: the action's row is
        the one ``record`` writes); the envelope of its build."""
        action_id = uuid.uuid4()
        action = servers.CreateAction(action_id, ctx.request_id)
        await servers.insert(conn, server, action=action)
        return Envelope(ctx.request_id, server.id, action_id)

    async def resolve_key(
        self, ctx: RequestContext, key_name: object, conn: Executor | None = None
    ) -> Keypair | None:
        """The caller's key pair named on create (key pairs are the user's, os-keypairs);
        None when none is named. Any other name, or a value that is no name, is 400 with
        nova's message. Read on ``conn`` when given (else on the pool)."""
        name = _key_name(key_name)
        key = None
        if name is not None:
            key = await keypairs.get(self.pool if conn is None else conn, ctx.user_id, name)
        return _found_key(key, key_name)

    async def delete_server(self, ctx: RequestContext, server_id: str) -> None:
        """DELETING until the server's host destroyed it; at once when no host holds it or
        its host is down. A delete already on its way is not started again."""
        sid = parse_uuid(server_id, "Instance")
        action_id = uuid.uuid4()
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self.locked(conn, ctx, sid, "servers:delete")
            if row.task_state == TaskState.DELETING:
                return
            check_allowed(row, "delete")
            await self.record(conn, ctx, sid, "delete", action_id)
            host = row.host
            if host is None or not await hosts.is_alive(
                conn, host, self.settings.host_down_after_s
            ):
                await self._delete_locally(conn, row, action_id)
                return
            await servers.set_task(conn, sid, TaskState.DELETING.value)
        envelope = Envelope(ctx.request_id, sid, action_id)
        await self.send_or_undo(
            self.clients.compute(host).destroy_server(envelope),
            envelope,
            what="delete",
            task=TaskState.DELETING,
            previous_task=row.task_state,
        )

    async def _delete_locally(self, conn: Conn, row: LockedServer, action_id: uuid.UUID) -> None:
        """Delete a server no host holds (never scheduled) or whose host is down: nobody
        else could finish the delete, so waiting for an agent would leave it stuck."""
        if row.host is not None:
            log.warning("host %s is down: deleting server %s locally", row.host, row.id)
        await delete_locally(conn, row)
        await actions.finish(conn, action_id, success=True)

    # --- server actions ------------------------------------------------------------------

    async def perform(self, ctx: RequestContext, server_id: str, plan: ActionPlan[Any]) -> None:
        """Run ``plan`` (actions/plan.py): its checks, its start, then its command."""
        await plan.check(self, ctx)
        started = await self.start_action(ctx, server_id, plan)
        to = plan.route(self.clients, started.row)
        if to is None:
            return  # done in the start's transaction
        await self.send_or_undo(
            plan.command(to, started.envelope),
            started.envelope,
            what=plan.action,
            task=ACTIONS[plan.action].task,
            previous_task=started.row.task_state,
            undo=plan.undo,
        )


def _found_flavor(flavor: Flavor | None) -> Flavor:
    """The flavor a request named, else 400 (nova's answer for a bad flavorRef)."""
    if flavor is None:
        raise Invalid("Invalid flavorRef provided.")
    return flavor


def _image_id(image_ref: str) -> uuid.UUID | None:
    """The id an imageRef names; None for one that is no UUID (no image can have it)."""
    try:
        return uuid.UUID(image_ref)
    except ValueError:
        return None


def _found_image(image: Image | None, image_ref: str, image_id: uuid.UUID | None) -> Image:
    """The image ``image_ref`` (whose id is ``image_id``, None: no UUID) named if the project
    may build from it, else 400."""
    if image_id is None:
        raise Invalid("Invalid imageRef provided.")
    if image is None:
        raise Invalid(f"Can not find requested image {image_ref}.")
    if image.status != "active":
        raise Invalid(f"Image {image_ref} is not active.")
    return image


def _key_name(key_name: object) -> str | None:
    """The key pair name a create gave, if it can be one (None: none, or no name)."""
    if isinstance(key_name, str) and 0 < len(key_name) <= 255:
        return key_name
    return None


def _found_key(key: Keypair | None, key_name: object) -> Keypair | None:
    """The key pair ``key_name`` named (None when none was named), else 400."""
    if key is None and key_name is not None:
        raise Invalid("Invalid key_name provided.")
    return key


def _reservation_id() -> str:
    """A new reservation id in nova's form: ``r-`` and 8 lowercase letters or digits."""
    return "r-" + random_string(string.ascii_lowercase + string.digits, 8)


def _new_server(
    ctx: RequestContext,
    request: ServerCreate,
    flavor: Flavor,
    image: Image,
    key: Keypair | None,
    reservation_id: str,
    position: tuple[int, int],
) -> servers.NewServer:
    """The row of a new server, the ``n``-th of ``count`` (``position``): the flavor's sizes
    are copied, so later changes of the flavor do not change the server. One of several is
    named ``name-n`` (nova's multi-instance name template, ``%(name)s-%(count)d``)."""
    n, count = position
    return servers.NewServer(
        id=uuid.uuid4(),
        tenant_id=ctx.project_id,
        user_id=ctx.user_id,
        name=request.name if count == 1 else f"{request.name}-{n}",
        image_id=image.id,
        flavor_id=flavor.id,
        vcpus=flavor.vcpus,
        ram_mb=flavor.ram_mb,
        disk_gb=flavor.disk_gb,
        access_ipv4=str(request.access_ipv4 or ""),
        access_ipv6=str(request.access_ipv6 or ""),
        metadata=request.metadata,
        key_name=None if key is None else key.name,
        key_data=None if key is None else key.public_key,
        key_fingerprint=None if key is None else key.fingerprint,
        reservation_id=reservation_id,
        config_drive=bool(request.config_drive),
        user_data=request.user_data,
        injected_files=injected_files(request.personality),
        launch_index=n - 1,
    )
