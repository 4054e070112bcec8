"""The actions the server's own host carries out with no more than the server itself: each
goes straight to ``compute.<host>``, and the host's report ends it (its task, or for the
network actions, which set none, the action's record).

changePassword and reboot are the guide's (2.3.1, 2.3.2); pause, unpause, suspend, resume,
resetNetwork and injectNetworkInfo its admin actions (3.1); os-stop and os-start nova's
os-server-start-stop extension (the server stays on its host, powered off: SHUTOFF).
"""

from __future__ import annotations

from api_gateway.compute.actions.plan import Locked, OnItsHost, gathered
from api_gateway.schemas import server_actions as schema
from shared import rpcapi
from shared.messages import InstanceSpec, NetworkAddress
from shared.rpcapi import ComputeClient, Envelope


class ChangePassword(OnItsHost):
    """ACTIVE (or ERROR, to retry a failed change) -> PASSWORD -> ACTIVE."""

    action = "changePassword"

    def __init__(self, args: schema.ChangePassword) -> None:
        self.admin_pass = args.admin_pass

    async def command(self, to: ComputeClient, envelope: Envelope) -> None:
        await to.change_password(envelope, self.admin_pass)


class _WithSpec(OnItsHost):
    """A command that carries the server's spec, for a host that must define it again."""

    def __init__(self) -> None:
        self.spec: InstanceSpec | None = None

    async def prepare(self, locked: Locked) -> None:
        self.spec = await locked.spec()


class Reboot(_WithSpec):
    """ACTIVE -> REBOOT (SOFT) or HARD_REBOOT (HARD) -> ACTIVE; a hard reboot recreates a
    domain its host lost, from the spec."""

    def __init__(self, args: schema.Reboot) -> None:
        super().__init__()
        self.hard = args.type is schema.RebootType.HARD
        self.action = "reboot_hard" if self.hard else "reboot"

    async def command(self, to: ComputeClient, envelope: Envelope) -> None:
        await to.reboot_server(envelope, gathered(self.spec), hard=self.hard)


class Pause(OnItsHost):
    """ACTIVE -> PAUSED: the guest frozen in memory."""

    action = "pause"

    async def command(self, to: ComputeClient, envelope: Envelope) -> None:
        await to.pause_server(envelope)


class Unpause(OnItsHost):
    """PAUSED -> ACTIVE."""

    action = "unpause"

    async def command(self, to: ComputeClient, envelope: Envelope) -> None:
        await to.unpause_server(envelope)


class Suspend(OnItsHost):
    """ACTIVE -> SUSPENDED: the guest's memory saved to its host's disk."""

    action = "suspend"

    async def command(self, to: ComputeClient, envelope: Envelope) -> None:
        await to.suspend_server(envelope)


class Resume(OnItsHost):
    """SUSPENDED -> ACTIVE."""

    action = "resume"

    async def command(self, to: ComputeClient, envelope: Envelope) -> None:
        await to.resume_server(envelope)


class Stop(OnItsHost):
    """os-stop: ACTIVE (or ERROR) -> task powering-off -> STOPPED (status SHUTOFF)."""

    action = "os-stop"

    async def command(self, to: ComputeClient, envelope: Envelope) -> None:
        await to.stop_server(envelope)


class Start(_WithSpec):
    """os-start: STOPPED -> task powering-on -> ACTIVE."""

    action = "os-start"

    async def command(self, to: ComputeClient, envelope: Envelope) -> None:
        await to.start_server(envelope, gathered(self.spec))


class _Network(OnItsHost):
    """The host re-applies the server's fixed addresses (no task, no status change, any
    state); they are gathered here, as agents never read the database."""

    def __init__(self) -> None:
        self.addresses: list[NetworkAddress] = []

    async def prepare(self, locked: Locked) -> None:
        self.addresses = rpcapi.network_addresses((await locked.server()).addresses)


class ResetNetwork(_Network):
    action = "resetNetwork"

    async def command(self, to: ComputeClient, envelope: Envelope) -> None:
        await to.reset_network(envelope, self.addresses)


class InjectNetworkInfo(_Network):
    action = "injectNetworkInfo"

    async def command(self, to: ComputeClient, envelope: Envelope) -> None:
        await to.inject_network_info(envelope, self.addresses)
