"""How commands travel: the one place that builds the bus's commands (nova's ``rpcapi``).

A command is a message of shared/messages.py published to a queue: the conductor's
(``shared.bus.CONDUCTOR``) or a compute agent's (``shared.bus.compute_queue(host)``). Senders
never build one themselves; they call a client here, ``ConductorClient(bus)`` or
``ComputeClient(bus, host)``, one method per command. So each of these is written once:

* a command's fields and the queue it goes to;
* the envelope every action's command carries (``Envelope``: request, server, action);
* the specs an agent needs, from database rows (``flavor_spec``, ``image_spec``,
  ``instance_spec``, ``network_addresses``): agents never read the database;
* the name of a server's domain on its hypervisor (``domain_name``);
* the sealing of admin passwords (shared/sealing.py): a client given the keyring seals what it
  sends, so no clear password reaches the broker.

Publishing waits for the broker and raises ``shared.bus.PublishFailed`` when it does not take
the command; what to take back then is the sender's business. The questions a gateway asks a
host and waits for (``ComputeClient.get_console``, ``get_console_output``) are calls
(shared/bus: ``Bus.call``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypedDict

from shared import bus as bus_mod
from shared.bus import Bus
from shared.messages import (
    ActionMessage,
    BackupServer,
    BuildServer,
    ChangePassword,
    CleanUpLiveMigration,
    ConfirmResize,
    ConsoleAnswer,
    ConsoleOutputAnswer,
    ConsoleProtocol,
    ConsoleRefusal,
    DestroyServer,
    EvacuateServer,
    FinishLiveMigration,
    FinishResize,
    FinishRevertResize,
    FlavorSpec,
    GetConsole,
    GetConsoleOutput,
    GuestData,
    ImageSpec,
    InjectNetworkInfo,
    InstanceSpec,
    LiveMigrate,
    LiveMigrateServer,
    Message,
    MigrateDisk,
    NetworkAddress,
    PauseServer,
    PrepareLiveMigration,
    ProbeCause,
    ProbeServers,
    PurgeServers,
    RebootServer,
    RebuildServer,
    RecoverLiveMigration,
    ResetNetwork,
    ResizeServer,
    ResumeServer,
    RevertResize,
    RollBackLiveMigration,
    SnapshotServer,
    SpawnServer,
    StartServer,
    StopServer,
    SuspendServer,
    UnpauseServer,
    WithAdminPass,
)
from shared.sealing import Keyring, SealedSecret

# --- names and envelopes -------------------------------------------------------------------


def domain_name(server_id: uuid.UUID) -> str:
    """The name of a server's domain on its hypervisor: the one place the convention lives
    (agents destroy, find and report domains by it)."""
    return f"instance-{server_id}"


@dataclass(frozen=True)
class Envelope:
    """What every command of one user action carries: the request that asked for it (for the
    logs), the server, and the action whose record the command's report closes."""

    request_id: str
    server_id: uuid.UUID
    action_id: uuid.UUID


class _Fields(TypedDict):
    request_id: str
    server_id: uuid.UUID
    action_id: uuid.UUID


def _fields(envelope: Envelope) -> _Fields:
    return {
        "request_id": envelope.request_id,
        "server_id": envelope.server_id,
        "action_id": envelope.action_id,
    }


class ConsoleRefused(Exception):
    """The host has no console to give for the server: ``reason`` says why (shared/messages.py
    ``ConsoleRefusal``), ``str()`` the host's words, for the log."""

    def __init__(self, reason: ConsoleRefusal, detail: str) -> None:
        super().__init__(detail or reason)
        self.reason: ConsoleRefusal = reason


# --- specs from rows -----------------------------------------------------------------------


class FlavorRow(Protocol):
    """A flavor as ``flavors`` holds it (shared.db.records.Flavor)."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def vcpus(self) -> int: ...
    @property
    def ram_mb(self) -> int: ...
    @property
    def disk_gb(self) -> int: ...


class ImageRow(Protocol):
    """An image as ``images`` holds it (shared.db.records.Image)."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def name(self) -> str: ...
    @property
    def disk_format(self) -> str | None: ...
    @property
    def location(self) -> str | None: ...
    @property
    def min_disk_gb(self) -> int: ...
    @property
    def metadata(self) -> Mapping[str, str]: ...
    @property
    def checksum(self) -> str | None: ...


class ServerRow(Protocol):
    """What a spec needs of a server: its row (shared.db.records.Server), or a new
    server's fields (shared.db.servers.NewServer)."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def name(self) -> str: ...
    @property
    def flavor_id(self) -> str: ...
    @property
    def vcpus(self) -> int: ...
    @property
    def ram_mb(self) -> int: ...
    @property
    def disk_gb(self) -> int: ...
    @property
    def image_id(self) -> uuid.UUID: ...
    @property
    def metadata(self) -> Mapping[str, str]: ...


def flavor_spec(flavor: FlavorRow) -> FlavorSpec:
    """A flavor as its row in ``flavors`` holds it."""
    return FlavorSpec(
        id=flavor.id,
        name=flavor.name,
        vcpus=flavor.vcpus,
        ram_mb=flavor.ram_mb,
        disk_gb=flavor.disk_gb,
    )


def image_spec(image: ImageRow | None, image_id: uuid.UUID) -> ImageSpec:
    """An image as its row in ``images`` holds it; only its id when the row is gone (purged)."""
    if image is None:
        return ImageSpec(id=image_id, name="")
    return ImageSpec(
        id=image.id,
        name=image.name,
        # an image without a format has no data either: only active images are built from
        disk_format=image.disk_format or "",
        location=image.location,
        min_disk_gb=image.min_disk_gb,
        properties=dict(image.metadata),
        checksum=image.checksum,
    )


def instance_spec(
    server: ServerRow,
    flavor: FlavorRow | None,
    image: ImageRow | None,
    guest: GuestData | None = None,
) -> InstanceSpec:
    """What an agent needs to (re)build ``server`` (a full row of ``servers``, or a new
    server's fields): its flavor as the server holds it, the sizes from its own columns (a
    flavor's row only gives the name, and may be gone), ``image``, the row of the image
    to build from (None: purged, only its id is known), and what its config drive
    delivers (None: nothing)."""
    return InstanceSpec(
        server_id=server.id,
        name=server.name,
        flavor=FlavorSpec(
            id=server.flavor_id,
            name=flavor.name if flavor is not None else server.flavor_id,
            vcpus=server.vcpus,
            ram_mb=server.ram_mb,
            disk_gb=server.disk_gb,
        ),
        image=image_spec(image, server.image_id),
        metadata=dict(server.metadata),
        guest=guest or GuestData(),
    )


def network_addresses(addresses: Iterable[Mapping[str, Any]]) -> list[NetworkAddress]:
    """A server's fixed addresses (its row's ``addresses``) as a host applies them."""
    return [NetworkAddress.model_validate(address) for address in addresses]


# --- clients -------------------------------------------------------------------------------


class _Client:
    """Publishes to one queue; seals admin passwords with ``keyring`` (None: this sender only
    forwards passwords sealed by someone else)."""

    def __init__(self, bus: Bus, routing_key: str, keyring: Keyring | None) -> None:
        self.bus = bus
        self.routing_key = routing_key
        self.keyring = keyring

    async def declare(self) -> None:
        """Make sure the queue exists, so commands wait there for a recipient that has not
        started yet instead of being refused."""
        await self.bus.declare(self.routing_key)

    async def _cast(self, command: Message) -> None:
        await self.bus.publish(self.routing_key, command)

    async def _send(self, kind: type[ActionMessage], envelope: Envelope, **fields: Any) -> None:
        """Publish the command ``kind`` of ``envelope``'s action, with its own ``fields``."""
        await self._cast(kind(**_fields(envelope), **fields))

    async def _send_to_domain(
        self, kind: type[ActionMessage], envelope: Envelope, **fields: Any
    ) -> None:
        """``_send``, for a command that names the server's domain."""
        await self._send(kind, envelope, domain_name=domain_name(envelope.server_id), **fields)

    async def _send_sealed(
        self, kind: type[WithAdminPass], envelope: Envelope, admin_pass: str, **fields: Any
    ) -> None:
        """``_send``, for a command that carries ``admin_pass`` sealed."""
        await self._send(
            kind, envelope, admin_pass=self._sealed(kind, admin_pass, envelope), **fields
        )

    def _sealed(self, kind: type[WithAdminPass], password: str, envelope: Envelope) -> str:
        if self.keyring is None:
            raise RuntimeError(f"{type(self).__name__} was given no keyring to seal passwords")
        return kind.seal_admin_pass(
            self.keyring, password, server_id=envelope.server_id, action_id=envelope.action_id
        )


class ConductorClient(_Client):
    """Commands for the conductor (``shared.bus.CONDUCTOR``): what needs a host chosen, or
    steps on more than one host driven."""

    def __init__(self, bus: Bus, *, keyring: Keyring | None = None) -> None:
        super().__init__(bus, bus_mod.CONDUCTOR, keyring)

    # --- sent by gateways

    async def build_server(
        self, envelope: Envelope, instance: InstanceSpec, admin_pass: str
    ) -> None:
        """Schedule and build a new server; ``admin_pass`` is sealed for the spawn."""
        await self._send_sealed(BuildServer, envelope, admin_pass, instance=instance)

    async def resize_server(self, envelope: Envelope, migration_id: uuid.UUID) -> None:
        """Place the resize (or, with the same flavor, the cold migration) ``migration_id``."""
        await self._send(ResizeServer, envelope, migration_id=migration_id)

    async def live_migrate_server(self, envelope: Envelope, migration_id: uuid.UUID) -> None:
        """Check, claim and drive the live migration ``migration_id``."""
        await self._send(LiveMigrateServer, envelope, migration_id=migration_id)

    async def evacuate_server(
        self, envelope: Envelope, evacuation_id: uuid.UUID, admin_pass: str
    ) -> None:
        """Claim another host for the evacuation ``evacuation_id`` and have it rebuild the
        server; ``admin_pass`` is sealed for that rebuild."""
        await self._send_sealed(EvacuateServer, envelope, admin_pass, evacuation_id=evacuation_id)

    # --- sent by conductors


class ComputeClient(_Client):
    """Commands for the compute agent on ``host`` (``shared.bus.compute_queue(host)``)."""

    def __init__(self, bus: Bus, host: str, *, keyring: Keyring | None = None) -> None:
        super().__init__(bus, bus_mod.compute_queue(host), keyring)
        self.host = host

    # --- sent by gateways

    async def destroy_server(self, envelope: Envelope) -> None:
        await self._send_to_domain(DestroyServer, envelope)

    async def change_password(self, envelope: Envelope, admin_pass: str) -> None:
        await self._send_sealed(
            ChangePassword, envelope, admin_pass, domain_name=domain_name(envelope.server_id)
        )

    async def reboot_server(
        self, envelope: Envelope, instance: InstanceSpec, *, hard: bool
    ) -> None:
        await self._send(RebootServer, envelope, instance=instance, hard=hard)

    async def rebuild_server(
        self, envelope: Envelope, instance: InstanceSpec, admin_pass: str
    ) -> None:
        await self._send_sealed(RebuildServer, envelope, admin_pass, instance=instance)

    async def snapshot_server(
        self, envelope: Envelope, image_id: uuid.UUID, disk_format: str
    ) -> None:
        await self._send_to_domain(
            SnapshotServer, envelope, image_id=image_id, disk_format=disk_format
        )

    async def backup_server(
        self, envelope: Envelope, image_id: uuid.UUID, disk_format: str
    ) -> None:
        await self._send_to_domain(
            BackupServer, envelope, image_id=image_id, disk_format=disk_format
        )

    async def confirm_resize(
        self, envelope: Envelope, migration_id: uuid.UUID, dest_host: str
    ) -> None:
        await self._send_to_domain(
            ConfirmResize, envelope, migration_id=migration_id, dest_host=dest_host
        )

    async def revert_resize(self, envelope: Envelope, migration_id: uuid.UUID) -> None:
        await self._send_to_domain(RevertResize, envelope, migration_id=migration_id)

    async def finish_revert_resize(
        self, envelope: Envelope, migration_id: uuid.UUID, instance: InstanceSpec
    ) -> None:
        await self._send(FinishRevertResize, envelope, migration_id=migration_id, instance=instance)

    async def pause_server(self, envelope: Envelope) -> None:
        await self._send_to_domain(PauseServer, envelope)

    async def unpause_server(self, envelope: Envelope) -> None:
        await self._send_to_domain(UnpauseServer, envelope)

    async def suspend_server(self, envelope: Envelope) -> None:
        await self._send_to_domain(SuspendServer, envelope)

    async def resume_server(self, envelope: Envelope) -> None:
        await self._send_to_domain(ResumeServer, envelope)

    async def stop_server(self, envelope: Envelope) -> None:
        await self._send_to_domain(StopServer, envelope)

    async def start_server(self, envelope: Envelope, instance: InstanceSpec) -> None:
        await self._send(StartServer, envelope, instance=instance)

    async def inject_network_info(
        self, envelope: Envelope, addresses: list[NetworkAddress]
    ) -> None:
        await self._send_to_domain(InjectNetworkInfo, envelope, addresses=addresses)

    async def reset_network(self, envelope: Envelope, addresses: list[NetworkAddress]) -> None:
        await self._send_to_domain(ResetNetwork, envelope, addresses=addresses)

    async def get_console(
        self, request_id: str, server_id: uuid.UUID, protocol: ConsoleProtocol, *, timeout_s: float
    ) -> ConsoleAnswer:
        """Where the display (``protocol``) of the server's running domain listens on this
        host: an answer with ``host`` and ``port``. A call, not a command: raises
        ``PublishFailed`` or ``CallTimeout`` when the host does not answer, ``ConsoleRefused``
        when it has no such console for the server."""
        request = GetConsole(
            request_id=request_id,
            server_id=server_id,
            domain_name=domain_name(server_id),
            protocol=protocol,
        )
        answer = await self.bus.call(bus_mod.call_queue(self.host), request, timeout_s=timeout_s)
        if not isinstance(answer, ConsoleAnswer):
            raise bus_mod.CallTimeout(f"host {self.host} answered {answer.type} to get_console")
        if answer.refused is not None:
            raise ConsoleRefused(answer.refused, answer.detail)
        return answer

    async def get_console_output(
        self, request_id: str, server_id: uuid.UUID, length: int | None, *, timeout_s: float
    ) -> str:
        """The end of the server's serial console log on this host, its last ``length`` lines
        (None: all the host gives). A call, as ``get_console``: raises ``PublishFailed`` or
        ``CallTimeout`` when the host does not answer, ``ConsoleRefused`` (``not_ready``)
        when the server has no guest there."""
        request = GetConsoleOutput(
            request_id=request_id,
            server_id=server_id,
            domain_name=domain_name(server_id),
            length=length,
        )
        answer = await self.bus.call(bus_mod.call_queue(self.host), request, timeout_s=timeout_s)
        if not isinstance(answer, ConsoleOutputAnswer):
            raise bus_mod.CallTimeout(
                f"host {self.host} answered {answer.type} to get_console_output"
            )
        if answer.refused is not None:
            raise ConsoleRefused(answer.refused, answer.detail)
        return answer.output

    # --- sent by conductors

    async def spawn_server(
        self, envelope: Envelope, instance: InstanceSpec, admin_pass: SealedSecret
    ) -> None:
        """Build the server placed here; ``admin_pass`` is its build's, forwarded sealed."""
        await self._send(SpawnServer, envelope, instance=instance, admin_pass=admin_pass)

    async def rebuild_evacuated(
        self, envelope: Envelope, instance: InstanceSpec, admin_pass: SealedSecret
    ) -> None:
        """Rebuild an evacuated server here, from its image; ``admin_pass`` is the
        evacuation's, forwarded sealed."""
        await self._send(RebuildServer, envelope, instance=instance, admin_pass=admin_pass)

    async def migrate_disk(
        self, envelope: Envelope, migration_id: uuid.UUID, instance: InstanceSpec, dest_host: str
    ) -> None:
        await self._send(
            MigrateDisk, envelope, migration_id=migration_id, instance=instance, dest_host=dest_host
        )

    async def finish_resize(
        self, envelope: Envelope, migration_id: uuid.UUID, instance: InstanceSpec, source_host: str
    ) -> None:
        await self._send(
            FinishResize,
            envelope,
            migration_id=migration_id,
            instance=instance,
            source_host=source_host,
        )

    async def prepare_live_migration(
        self,
        envelope: Envelope,
        migration_id: uuid.UUID,
        instance: InstanceSpec,
        *,
        block_migration: bool,
    ) -> None:
        await self._send(
            PrepareLiveMigration,
            envelope,
            migration_id=migration_id,
            instance=instance,
            block_migration=block_migration,
        )

    async def live_migrate(
        self,
        envelope: Envelope,
        migration_id: uuid.UUID,
        instance: InstanceSpec,
        *,
        dest_host: str,
        dest_uri: str,
        block_migration: bool,
    ) -> None:
        await self._send(
            LiveMigrate,
            envelope,
            migration_id=migration_id,
            instance=instance,
            dest_host=dest_host,
            dest_uri=dest_uri,
            block_migration=block_migration,
        )

    async def finish_live_migration(
        self,
        envelope: Envelope,
        migration_id: uuid.UUID,
        instance: InstanceSpec,
        *,
        handover: str | None,
    ) -> None:
        await self._send(
            FinishLiveMigration,
            envelope,
            migration_id=migration_id,
            instance=instance,
            handover=handover,
        )

    async def clean_up_live_migration(
        self,
        envelope: Envelope,
        migration_id: uuid.UUID,
        instance: InstanceSpec,
        *,
        block_migration: bool,
    ) -> None:
        await self._send(
            CleanUpLiveMigration,
            envelope,
            migration_id=migration_id,
            instance=instance,
            block_migration=block_migration,
        )

    async def recover_live_migration(
        self, envelope: Envelope, migration_id: uuid.UUID, instance: InstanceSpec
    ) -> None:
        await self._send(
            RecoverLiveMigration, envelope, migration_id=migration_id, instance=instance
        )

    async def roll_back_live_migration(
        self,
        envelope: Envelope,
        migration_id: uuid.UUID,
        instance: InstanceSpec,
        *,
        block_migration: bool,
    ) -> None:
        await self._send(
            RollBackLiveMigration,
            envelope,
            migration_id=migration_id,
            instance=instance,
            block_migration=block_migration,
        )

    async def probe_servers(
        self,
        servers: Iterable[uuid.UUID],
        *,
        probe_at: datetime,
        cause: ProbeCause,
        request_id: str,
    ) -> None:
        """Ask which of ``servers`` this host has. Its queue is declared first: an agent
        that sent its inventory but does not consume yet gets the probe once it does."""
        await self.bus.declare(self.routing_key)
        await self._cast(
            ProbeServers(
                request_id=request_id,
                host=self.host,
                servers=list(servers),
                probe_at=probe_at,
                cause=cause,
            )
        )

    async def purge_servers(self, servers: Iterable[uuid.UUID]) -> None:
        """Destroy the domains of these servers, which the database has deleted (or
        evacuated from this host while it was gone)."""
        await self._cast(PurgeServers(host=self.host, servers=list(servers)))


@dataclass(frozen=True)
class Clients:
    """The clients of one sender: its bus, and its keyring when it seals the passwords it
    sends (a gateway) rather than forwarding sealed ones (a conductor)."""

    bus: Bus
    keyring: Keyring | None = None

    def conductor(self) -> ConductorClient:
        return ConductorClient(self.bus, keyring=self.keyring)

    def compute(self, host: str) -> ComputeClient:
        return ComputeClient(self.bus, host, keyring=self.keyring)
