"""Every message on the bus, as a versioned pydantic model.

A message is JSON on the wire. Its envelope (``type``, ``version``, ``message_id``,
``request_id``, ``server_id``, ``sent_at``) is the same for all; ``parse`` turns bytes back into
the right class by ``type``. Delivery is at least once, so every handler must be idempotent:
``message_id`` identifies a delivery, ``action_id`` the user's action it serves.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from shared.sealing import Keyring, SealedSecret
from shared.states import COMMAND_TASKS


def _now() -> datetime:
    return datetime.now(UTC)


class Message(BaseModel):
    """The envelope every message shares."""

    # a refused value is not repeated in the error: it may be a secret (shared/sealing.py)
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    type: str
    version: int = 1
    message_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    request_id: str = ""
    server_id: uuid.UUID | None = None
    sent_at: datetime = Field(default_factory=_now)


class FlavorSpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    vcpus: int
    ram_mb: int
    disk_gb: int


class ImageSpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: uuid.UUID
    name: str
    disk_format: str = "qcow2"
    location: str | None = None
    min_disk_gb: int = 0
    #: the image's metadata: the libvirt driver boots the kernel, initrd and command line
    #: its ``kernel``, ``initrd`` and ``cmdline`` keys name (compute_agent/virt/libvirt/images.py)
    properties: dict[str, str] = {}
    #: the MD5 of its data, as the image service computed it (None: not known): a host that
    #: downloads the image checks what it got against it
    checksum: str | None = None


class InjectedFile(BaseModel):
    """A personality file of the create (or rebuild) request: its path in the guest and its
    contents, base64 as the request gave them."""

    model_config = ConfigDict(frozen=True)

    path: str
    contents: str


class GuestData(BaseModel):
    """What the server's config drive delivers into its guest (compute_agent/config_drive.py):
    kept with the server (the key as it was at create), so that every host that defines the
    server again (a rebuild, a migration's destination) builds the same drive."""

    model_config = ConfigDict(frozen=True)

    project_id: str = ""
    #: the create request's ``config_drive`` (a drive is also built without it when there is
    #: something to deliver)
    config_drive: bool = False
    files: tuple[InjectedFile, ...] = ()
    #: base64, as the create request gave it
    user_data: str | None = None
    key_name: str | None = None
    key_data: str | None = None
    #: the server's index in its multiple create (nova's ``launch_index``)
    launch_index: int = 0
    reservation_id: str | None = None


class InstanceSpec(BaseModel):
    """Everything an agent needs to build a server; agents never read the database."""

    model_config = ConfigDict(frozen=True)

    server_id: uuid.UUID
    name: str
    flavor: FlavorSpec
    image: ImageSpec
    metadata: dict[str, str] = {}
    guest: GuestData = GuestData()

    @property
    def has_config_drive(self) -> bool:
        """Whether the server gets a config drive: asked for, or something to deliver (its
        files, key, user data or metadata)."""
        guest = self.guest
        return bool(
            guest.config_drive or guest.files or guest.user_data or guest.key_data or self.metadata
        )

    @property
    def domain_name(self) -> str:
        from shared.rpcapi import domain_name  # rpcapi builds messages: imported when used

        return domain_name(self.server_id)


class Fault(BaseModel):
    """An asynchronous fault, stored on the server and shown while it is in ERROR."""

    model_config = ConfigDict(frozen=True)

    code: int = 500
    message: str
    details: str = ""


class ActionMessage(Message):
    """A message that serves one user action (its row in ``actions``)."""

    action_id: uuid.UUID


class WithAdminPass(ActionMessage):
    """A command carrying the server's admin password, sealed (shared/sealing.py): the
    broker keeps messages on disk, parks them for retries and dead-letters them, so it never
    sees the clear text. The gateway seals, the conductor forwards, the agent opens it where
    it uses it.

    The seal is bound to ``opened_by``, the command that opens it (a build's password goes on
    unopened into the host's spawn command), to the server and to the action.
    """

    opened_by: ClassVar[str]
    admin_pass: SealedSecret

    @classmethod
    def seal_admin_pass(
        cls, keyring: Keyring, password: str, *, server_id: uuid.UUID, action_id: uuid.UUID
    ) -> str:
        """``password`` sealed for this kind of command of ``action_id`` on ``server_id``."""
        return keyring.seal(password, _admin_pass_context(cls.opened_by, server_id, action_id))

    def open_admin_pass(self, keyring: Keyring) -> str:
        """The clear password; ``shared.sealing.UnsealError`` when it does not open here."""
        context = _admin_pass_context(self.opened_by, self.server_id, self.action_id)
        return keyring.unseal(self.admin_pass, context)


def _admin_pass_context(opened_by: str, server_id: uuid.UUID | None, action_id: uuid.UUID) -> str:
    return f"admin_pass:{opened_by}:{server_id}:{action_id}"


class DomainCommand(ActionMessage):
    """A command on the server's domain on its host, by its name (``shared.rpcapi.domain_name``)."""

    domain_name: str


class StepCommand(ActionMessage):
    """A command that is one step of a resize or live migration, the record ``migration_id``
    (conductor/steps.py): the host's report names that record too."""

    migration_id: uuid.UUID


# --- gateway -> conductor -------------------------------------------------------------


class BuildServer(WithAdminPass):
    """A new server needs a host: schedule it, claim the resources, send it to the agent
    (``admin_pass`` is forwarded, still sealed, in its ``SpawnServer``)."""

    opened_by: ClassVar[str] = "spawn_server"
    type: Literal["build_server"] = "build_server"
    instance: InstanceSpec


class EvacuateServer(WithAdminPass):
    """The server's host is gone: claim another (``evacuation_id``'s record names the source,
    the requested host if any, and the server's spec) and have it rebuild the server from its
    image (``admin_pass`` is forwarded, still sealed, in its ``RebuildServer``)."""

    opened_by: ClassVar[str] = "rebuild_server"
    type: Literal["evacuate_server"] = "evacuate_server"
    evacuation_id: uuid.UUID


# --- conductor/gateway -> compute.<host> ----------------------------------------------


class SpawnServer(WithAdminPass):
    opened_by: ClassVar[str] = "spawn_server"
    type: Literal["spawn_server"] = "spawn_server"
    instance: InstanceSpec


class DestroyServer(DomainCommand):
    type: Literal["destroy_server"] = "destroy_server"


# --- server actions (guide 2.3.1–2.3.7) ----------------------------------------------
# Host-local actions go from the gateway straight to ``compute.<host>``; a resize goes to the
# conductor first, which places it and then drives the agents step by step, each step's
# report triggering the next command.


class ChangePassword(WithAdminPass):
    opened_by: ClassVar[str] = "change_password"
    type: Literal["change_password"] = "change_password"
    domain_name: str


class RebootServer(ActionMessage):
    """SOFT (``hard`` False) or HARD; the spec lets a hard reboot recreate a lost domain."""

    type: Literal["reboot_server"] = "reboot_server"
    instance: InstanceSpec
    hard: bool


class RebuildServer(WithAdminPass):
    """Wipe the server and build it again from ``instance.image``, same id and addresses."""

    opened_by: ClassVar[str] = "rebuild_server"
    type: Literal["rebuild_server"] = "rebuild_server"
    instance: InstanceSpec


class SnapshotServer(DomainCommand):
    """Write an image of the server into the image store as ``image_id``."""

    type: Literal["snapshot_server"] = "snapshot_server"
    image_id: uuid.UUID
    disk_format: str = "qcow2"


class ResizeServer(ActionMessage):
    """A resize (or, with the same flavor, a migration) needs a destination host.

    The migration record ``migration_id`` holds the server's spec and both flavors.
    """

    type: Literal["resize_server"] = "resize_server"
    migration_id: uuid.UUID


class MigrateDisk(StepCommand):
    """Source host, first step of a resize: power off, make the disk available on
    ``dest_host``, keep the domain for a revert."""

    type: Literal["migrate_disk"] = "migrate_disk"
    instance: InstanceSpec
    dest_host: str


class FinishResize(StepCommand):
    """Destination host: run the server with ``instance.flavor`` (the new one)."""

    type: Literal["finish_resize"] = "finish_resize"
    instance: InstanceSpec
    source_host: str


class ConfirmResize(StepCommand):
    """Source host: the resize is confirmed, discard the original."""

    type: Literal["confirm_resize"] = "confirm_resize"
    domain_name: str
    dest_host: str


class RevertResize(StepCommand):
    """Destination host of a resize to another host: remove the resized copy."""

    type: Literal["revert_resize"] = "revert_resize"
    domain_name: str


class FinishRevertResize(StepCommand):
    """Source host: run the original again with ``instance.flavor`` (the old one); ends a
    revert, or rolls back a resize that failed on its destination."""

    type: Literal["finish_revert_resize"] = "finish_revert_resize"
    instance: InstanceSpec


# --- admin actions (guide 3.1) ----------------------------------------------------------
# They go from the gateway to ``compute.<host>``; the power actions and createBackup end the
# task their action set, the network actions run beside any task (shared/states.py).


class PauseServer(DomainCommand):
    """Freeze the running guest in memory (PAUSED)."""

    type: Literal["pause_server"] = "pause_server"


class UnpauseServer(DomainCommand):
    type: Literal["unpause_server"] = "unpause_server"


class SuspendServer(DomainCommand):
    """Save the guest's memory to the host's disk and stop it (SUSPENDED)."""

    type: Literal["suspend_server"] = "suspend_server"


class ResumeServer(DomainCommand):
    """Run a suspended guest again from its saved memory."""

    type: Literal["resume_server"] = "resume_server"


class StopServer(DomainCommand):
    """os-stop: shut the guest down (gracefully, then by force) and keep it defined."""

    type: Literal["stop_server"] = "stop_server"


class StartServer(ActionMessage):
    """os-start: power a stopped server on again (defined again from ``instance`` if its
    hypervisor lost it)."""

    type: Literal["start_server"] = "start_server"
    instance: InstanceSpec


class BackupServer(DomainCommand):
    """createBackup: write an image of the server as ``image_id``, exactly as a snapshot; the
    conductor, not the host, then rotates the server's backups (it knows how many to keep)."""

    type: Literal["backup_server"] = "backup_server"
    image_id: uuid.UUID
    disk_format: str = "qcow2"


class NetworkAddress(BaseModel):
    """A fixed address of a server, as its representation shows it."""

    model_config = ConfigDict(frozen=True)

    network: str
    version: int
    addr: str


class InjectNetworkInfo(DomainCommand):
    """Put the server's current network configuration where the guest can read it."""

    type: Literal["inject_network_info"] = "inject_network_info"
    addresses: list[NetworkAddress]


class ResetNetwork(DomainCommand):
    """Re-apply the server's network configuration: inject it, and have the guest take it up
    again."""

    type: Literal["reset_network"] = "reset_network"
    addresses: list[NetworkAddress]


# --- compute agent -> conductor -------------------------------------------------------


class SnapshotResult(BaseModel):
    """What a snapshot produced: the image file, relative to the image store."""

    model_config = ConfigDict(frozen=True)

    image_id: uuid.UUID
    location: str | None = None
    size_bytes: int | None = None
    #: MD5 and SHA-512 of the file, where the image service stored it and computed them
    checksum: str | None = None
    os_hash_value: str | None = None


class CommandReport(ActionMessage):
    """A host ran ``command`` (the command's ``type``, one of shared/states.py's
    ``COMMAND_TASKS``) for the action ``action_id``, or failed to.

    Every command's outcome comes back in this one shape, and the conductor applies it only
    if it is the report the server awaits (conductor/legality.py). ``task_state`` is the
    task the command ends, as the host learns it from shared/states.py (None: its action
    runs beside any task); ``migration_id`` the resize or live migration it is a step of;
    ``power_state`` the server's on the reporting host afterwards. A snapshot's or backup's
    report names the image (``snapshot``) whatever its outcome; the ``live_migrate`` step's
    gives the ``handover`` when the destination must define the server itself (see
    ``FinishLiveMigration``).
    """

    type: Literal["command_report"] = "command_report"
    host: str
    command: str
    task_state: str | None
    success: bool
    #: NOSTATE (0) when the command tells nothing of the server's power
    power_state: int = 0
    fault: Fault | None = None
    migration_id: uuid.UUID | None = None
    snapshot: SnapshotResult | None = None
    handover: str | None = None

    @field_validator("command")
    @classmethod
    def _a_host_command(cls, command: str) -> str:
        if command not in COMMAND_TASKS:
            raise ValueError(f"{command!r} is no command a host runs for an action")
        return command


class HostCapacity(BaseModel):
    model_config = ConfigDict(frozen=True)

    hypervisor_type: str
    hypervisor_uri: str
    vcpus: int
    ram_mb: int
    disk_gb: int


class Heartbeat(Message):
    """An agent is alive; the first one also registers the host and its capacity."""

    type: Literal["heartbeat"] = "heartbeat"
    host: str
    capacity: HostCapacity


# --- live migration (guide 3.1 `os-migrateLive`) -------------------------------------------
# The gateway records the live migration and asks the conductor (``LiveMigrateServer``),
# which checks the destination, claims room there and then drives the two hosts one step at
# a time, each step's report triggering the next (conductor/live_migration.py): the
# destination prepares, the source migrates the running server, the destination confirms it
# runs there, the source cleans up. After a failure the source makes sure the server runs
# there (``RecoverLiveMigration``), then the destination removes what it holds.


class LiveMigrateServer(ActionMessage):
    """Gateway -> conductor: the live migration ``migration_id`` (its record holds the
    destination and the request's options) needs its destination checked and claimed."""

    type: Literal["live_migrate_server"] = "live_migrate_server"
    migration_id: uuid.UUID


class PrepareLiveMigration(StepCommand):
    """Destination: check the server can run here and make what receiving it needs."""

    type: Literal["prepare_live_migration"] = "prepare_live_migration"
    instance: InstanceSpec
    block_migration: bool


class LiveMigrate(StepCommand):
    """Source: move the running server to the hypervisor at ``dest_uri`` (what ``dest_host``
    reports in its heartbeats), its local disks too when ``block_migration``."""

    type: Literal["live_migrate"] = "live_migrate"
    instance: InstanceSpec
    dest_host: str
    dest_uri: str
    block_migration: bool


class FinishLiveMigration(StepCommand):
    """Destination: confirm the server runs here. ``handover`` is the server's definition
    when the source's hypervisor could not move it itself (libvirt's test hypervisor): the
    destination then defines and starts it."""

    type: Literal["finish_live_migration"] = "finish_live_migration"
    instance: InstanceSpec
    handover: str | None = None


class CleanUpLiveMigration(StepCommand):
    """Source: the server runs on the destination; remove what is left of it here (its
    local disks only when they went along, ``block_migration``)."""

    type: Literal["clean_up_live_migration"] = "clean_up_live_migration"
    instance: InstanceSpec
    block_migration: bool


class RecoverLiveMigration(StepCommand):
    """Source, after a failed migration: make sure the server runs here."""

    type: Literal["recover_live_migration"] = "recover_live_migration"
    instance: InstanceSpec


class RollBackLiveMigration(StepCommand):
    """Destination, after a failed migration (the source runs the server): remove what was
    prepared or received here (local disks only when they were to come, ``block_migration``)."""

    type: Literal["roll_back_live_migration"] = "roll_back_live_migration"
    instance: InstanceSpec
    block_migration: bool


# --- power states the hypervisor reports on its own (agent -> conductor) -------------------
# A guest can change its power by itself (shut down, crash, be paused by its hypervisor):
# the agent hears of it from the hypervisor's lifecycle events, and checks every server's
# power now and then as a safety net, and reports what it observed.


class ServerPower(BaseModel):
    """The power state of one server, as its host's hypervisor says."""

    model_config = ConfigDict(frozen=True)

    server_id: uuid.UUID
    power_state: int


class PowerStateReport(Message):
    """What ``host``'s hypervisor said of these servers, unasked: of one server after a
    lifecycle event (``server_id`` set), or of every server it has (``server_id`` None).

    ``observed_at`` is the agent's clock, which may be minutes off PostgreSQL's: it is for
    people and logs. So the report is a hint: where it disagrees with the database the
    conductor asks the host again (``ProbeServers``) and judges by the answer, whose moment it
    knows on PostgreSQL's clock (conductor/power_states.py, conductor/reconcile.py)."""

    type: Literal["power_state_report"] = "power_state_report"
    host: str
    observed_at: datetime
    servers: list[ServerPower]


# --- reconciliation when an agent starts (agent <-> conductor) --------------------------


class HostInventory(Message):
    """Every server ``host``'s hypervisor had when its agent started, sent before it takes any
    command (conductor/reconcile.py). ``observed_at`` is the agent's clock, for people and
    logs: the servers it lacks are judged by a probe's answer, never by that clock."""

    type: Literal["host_inventory"] = "host_inventory"
    host: str
    observed_at: datetime
    servers: list[uuid.UUID]


#: Why the conductor probes a host: what the fault of a server found missing says.
ProbeCause = Literal["agent_started", "periodic_check", "power_change"]


class ProbeServers(Message):
    """Look at these servers on ``host``'s hypervisor now, and answer (``ProbeReport``).

    ``probe_at`` is PostgreSQL's clock when the conductor sent the probe. The agent looks
    only once the probe has arrived, so what it sees is newer than every change the database
    stamped before ``probe_at``: the conductor judges the answer by that alone, and never
    needs to read the agent's clock (conductor/reconcile.py)."""

    type: Literal["probe_servers"] = "probe_servers"
    host: str
    servers: list[uuid.UUID]
    probe_at: datetime
    cause: ProbeCause


class ProbeReport(Message):
    """The answer to a ``ProbeServers``, whose ``servers``, ``probe_at`` and ``cause`` it
    echoes: ``found`` are those of ``servers`` the hypervisor has, with their power; it has
    none of the others."""

    type: Literal["probe_report"] = "probe_report"
    host: str
    servers: list[uuid.UUID]
    probe_at: datetime
    cause: ProbeCause
    found: list[ServerPower]


class PurgeServers(Message):
    """Destroy these servers' domains on ``host``: the database has them deleted, or
    evacuated to another host while this one was gone (stale copies, never to run again)."""

    type: Literal["purge_servers"] = "purge_servers"
    host: str
    servers: list[uuid.UUID]


# --- consoles (nova's os-consoles): a question a gateway asks a host, answered at once ------


#: The display protocols a guest's console speaks (a console type of the API maps to one).
ConsoleProtocol = Literal["vnc", "spice"]

#: Why a host gives no console: its hypervisor has no consoles at all (``unsupported``), the
#: guest has none of this protocol (``unavailable``), the guest is not running here now
#: (``not_ready``).
ConsoleRefusal = Literal["unsupported", "unavailable", "not_ready"]


class GetConsole(Message):
    """Gateway -> agent, a request that waits for its answer (``Bus.call``): where the
    display of the server's running domain listens. Not a command: it changes nothing and
    is never retried, so it carries no action."""

    type: Literal["get_console"] = "get_console"
    domain_name: str
    protocol: ConsoleProtocol


class ConsoleAnswer(Message):
    """The answer to a ``GetConsole``: the address the gateway's console proxy connects to
    (``host``, ``port``), or why there is none (``refused``, with a message for the log)."""

    type: Literal["console_answer"] = "console_answer"
    host: str = ""
    port: int = 0
    refused: ConsoleRefusal | None = None
    detail: str = ""


class GetConsoleOutput(Message):
    """Gateway -> agent, a call like ``GetConsole`` (nova's os-console-output): the end of the
    server's serial console log, its last ``length`` lines (None: all the driver gives). The
    host cuts the lines, as nova's compute manager did, so only what is asked for travels."""

    type: Literal["get_console_output"] = "get_console_output"
    domain_name: str
    length: int | None = None


class ConsoleOutputAnswer(Message):
    """The answer to a ``GetConsoleOutput``: the log's text, or ``not_ready`` when the server
    has no guest on this host now (not built yet, gone, moved), with a message for the log."""

    type: Literal["console_output_answer"] = "console_output_answer"
    output: str = ""
    refused: Literal["not_ready"] | None = None
    detail: str = ""


AnyMessage = Annotated[
    BuildServer
    | EvacuateServer
    | SpawnServer
    | DestroyServer
    | ChangePassword
    | RebootServer
    | RebuildServer
    | SnapshotServer
    | ResizeServer
    | MigrateDisk
    | FinishResize
    | ConfirmResize
    | RevertResize
    | FinishRevertResize
    | LiveMigrateServer
    | PrepareLiveMigration
    | LiveMigrate
    | FinishLiveMigration
    | CleanUpLiveMigration
    | RecoverLiveMigration
    | RollBackLiveMigration
    | CommandReport
    | Heartbeat
    | PauseServer
    | UnpauseServer
    | SuspendServer
    | ResumeServer
    | BackupServer
    | InjectNetworkInfo
    | ResetNetwork
    | StopServer
    | StartServer
    | PowerStateReport
    | HostInventory
    | ProbeServers
    | ProbeReport
    | PurgeServers
    | GetConsole
    | ConsoleAnswer
    | GetConsoleOutput
    | ConsoleOutputAnswer,
    Field(discriminator="type"),
]

_ADAPTER: TypeAdapter[AnyMessage] = TypeAdapter(
    AnyMessage, config=ConfigDict(hide_input_in_errors=True)
)


def parse(body: bytes | str) -> Message:
    """Decode a message of any known type; raises ``pydantic.ValidationError`` otherwise."""
    message: Message = _ADAPTER.validate_json(body)
    return message


def encode(message: Message) -> bytes:
    return message.model_dump_json().encode()
