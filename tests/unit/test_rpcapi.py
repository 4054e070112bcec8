"""shared/rpcapi.py, the one place commands are built: domain names, specs from rows, and
the clients that send each command to its queue, passwords sealed."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import pytest

from shared import messages, rpcapi
from shared.bus import CONDUCTOR, compute_queue
from shared.messages import (
    BuildServer,
    ChangePassword,
    ConfirmResize,
    DestroyServer,
    FinishRevertResize,
    FlavorSpec,
    ImageSpec,
    InjectNetworkInfo,
    InstanceSpec,
    Message,
    NetworkAddress,
    PauseServer,
    RebootServer,
    RebuildServer,
    ResizeServer,
    StartServer,
    StopServer,
    WithAdminPass,
)
from shared.rpcapi import Clients, ComputeClient, ConductorClient, Envelope
from shared.sealing import Keyring, generate_key


class RecordingBus:
    """Takes what is published, as the broker would; each command survives the wire."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Message]] = []
        self.declared: list[str] = []

    async def declare(self, queue: str) -> None:
        self.declared.append(queue)

    async def publish(self, routing_key: str, message: Message) -> None:
        self.sent.append((routing_key, messages.parse(messages.encode(message))))


SERVER_ID = uuid.uuid4()
ENVELOPE = Envelope("req-1", SERVER_ID, uuid.uuid4())
KEYRING = Keyring.from_setting(generate_key())

FLAVOR_ROW = {"id": "2", "name": "m1.small", "vcpus": 1, "ram_mb": 2048, "disk_gb": 20}
IMAGE_ROW = {
    "id": uuid.uuid4(),
    "name": "cirros",
    "disk_format": "raw",
    "location": "cirros.img",
    "min_disk_gb": 1,
    "metadata": {"kernel": "vmlinuz"},
    "checksum": "9e107d9d372bb6826bd81d3542a419d6",
}
#: a server whose row keeps older sizes than its flavor's row has now
SERVER_ROW = {
    "id": SERVER_ID,
    "name": "web",
    "flavor_id": "2",
    "vcpus": 1,
    "ram_mb": 1024,
    "disk_gb": 10,
    "image_id": IMAGE_ROW["id"],
    "metadata": {"k": "v"},
}


def _row(fields: dict[str, Any]) -> Any:
    """A typed row (shared/db/records.py) of these columns."""
    return SimpleNamespace(**fields)


def _spec() -> InstanceSpec:
    return rpcapi.instance_spec(_row(SERVER_ROW), _row(FLAVOR_ROW), _row(IMAGE_ROW))


def test_a_domain_is_named_after_its_server_in_one_place() -> None:
    assert rpcapi.domain_name(SERVER_ID) == f"instance-{SERVER_ID}"
    assert _spec().domain_name == rpcapi.domain_name(SERVER_ID)


def test_specs_are_built_from_rows() -> None:
    assert rpcapi.flavor_spec(_row(FLAVOR_ROW)) == FlavorSpec(**FLAVOR_ROW)
    image = rpcapi.image_spec(_row(IMAGE_ROW), IMAGE_ROW["id"])
    assert image == ImageSpec(
        id=IMAGE_ROW["id"],
        name="cirros",
        disk_format="raw",
        location="cirros.img",
        min_disk_gb=1,
        properties={"kernel": "vmlinuz"},
        checksum="9e107d9d372bb6826bd81d3542a419d6",
    )


def test_a_server_spec_keeps_the_sizes_the_server_holds() -> None:
    spec = _spec()
    assert spec.flavor == FlavorSpec(id="2", name="m1.small", vcpus=1, ram_mb=1024, disk_gb=10)
    assert (spec.server_id, spec.name, spec.metadata) == (SERVER_ID, "web", {"k": "v"})
    assert spec.image.properties == {"kernel": "vmlinuz"}


def test_a_spec_survives_a_deleted_flavor_and_a_purged_image() -> None:
    spec = rpcapi.instance_spec(_row(SERVER_ROW), None, None)
    assert spec.flavor.name == "2"  # the flavor's id stands in for its name
    assert spec.image == ImageSpec(id=IMAGE_ROW["id"], name="")


def test_addresses_are_built_from_the_server_row() -> None:
    rows = [{"network": "private", "version": 4, "addr": "10.0.0.2"}]
    assert rpcapi.network_addresses(rows) == [
        NetworkAddress(network="private", version=4, addr="10.0.0.2")
    ]


async def _send(call: Any) -> tuple[str, Message]:
    bus = RecordingBus()
    await call(bus)
    ((routing_key, command),) = bus.sent
    assert (command.request_id, command.server_id) == ("req-1", SERVER_ID)
    assert getattr(command, "action_id", None) == ENVELOPE.action_id
    return routing_key, command


@pytest.mark.parametrize(
    ("call", "kind"),
    [
        (lambda c: c.destroy_server(ENVELOPE), DestroyServer),
        (lambda c: c.pause_server(ENVELOPE), PauseServer),
        (lambda c: c.stop_server(ENVELOPE), StopServer),
        (lambda c: c.confirm_resize(ENVELOPE, uuid.uuid4(), "b"), ConfirmResize),
        (lambda c: c.inject_network_info(ENVELOPE, []), InjectNetworkInfo),
    ],
)
async def test_host_commands_go_to_the_hosts_queue_with_the_domain_name(
    call: Any, kind: type[Message]
) -> None:
    routing_key, command = await _send(lambda bus: call(ComputeClient(bus, "h1")))
    assert routing_key == compute_queue("h1")
    assert isinstance(command, kind)
    assert getattr(command, "domain_name") == rpcapi.domain_name(SERVER_ID)  # noqa: B009


@pytest.mark.parametrize(
    ("call", "kind"),
    [
        (lambda c: c.reboot_server(ENVELOPE, _spec(), hard=True), RebootServer),
        (lambda c: c.start_server(ENVELOPE, _spec()), StartServer),
        (lambda c: c.finish_revert_resize(ENVELOPE, uuid.uuid4(), _spec()), FinishRevertResize),
    ],
)
async def test_host_commands_that_define_the_server_carry_its_spec(
    call: Any, kind: type[Message]
) -> None:
    routing_key, command = await _send(lambda bus: call(ComputeClient(bus, "h1")))
    assert routing_key == compute_queue("h1")
    assert isinstance(command, kind)
    assert getattr(command, "instance") == _spec()  # noqa: B009


async def test_conductor_commands_go_to_the_conductors_queue() -> None:
    migration_id = uuid.uuid4()
    routing_key, command = await _send(
        lambda bus: ConductorClient(bus).resize_server(ENVELOPE, migration_id)
    )
    assert routing_key == CONDUCTOR
    assert isinstance(command, ResizeServer) and command.migration_id == migration_id


@pytest.mark.parametrize(
    ("call", "kind"),
    [
        (lambda cs: cs.conductor().build_server(ENVELOPE, _spec(), "s3cret"), BuildServer),
        (lambda cs: cs.compute("h1").change_password(ENVELOPE, "s3cret"), ChangePassword),
        (lambda cs: cs.compute("h1").rebuild_server(ENVELOPE, _spec(), "s3cret"), RebuildServer),
    ],
)
async def test_passwords_are_sealed_for_the_command_that_opens_them(
    call: Any, kind: type[WithAdminPass]
) -> None:
    bus = RecordingBus()
    await call(Clients(bus, KEYRING))
    ((_, command),) = bus.sent
    assert isinstance(command, kind)
    assert "s3cret" not in messages.encode(command).decode()
    assert command.open_admin_pass(KEYRING) == "s3cret"


async def test_a_sender_without_a_keyring_cannot_seal() -> None:
    with pytest.raises(RuntimeError, match="no keyring"):
        await ComputeClient(RecordingBus(), "h1").change_password(ENVELOPE, "s3cret")


async def test_a_client_declares_its_queue() -> None:
    bus = RecordingBus()
    await ConductorClient(bus).declare()
    await ComputeClient(bus, "h1").declare()
    assert bus.declared == [CONDUCTOR, compute_queue("h1")]
