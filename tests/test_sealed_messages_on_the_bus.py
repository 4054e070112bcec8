"""Nothing secret at rest in the broker: on RabbitMQ itself, a changePassword or a rebuild whose
handler keeps failing is parked for its retries and ends in ``<prefix>.dead`` with its admin
password sealed, and every retry still opens it; an agent that cannot open it reports the
action failed instead of failing the handler into the dead letters.

(The in-process bus keeps the same promises and is checked too.)
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest

from compute_agent.service import AgentService
from compute_agent.virt.fake import FakeDriver
from shared import bus as bus_mod
from shared import messages
from shared.bus import Bus
from shared.bus.memory import MemoryBus
from shared.bus.rabbitmq import RabbitBus
from shared.messages import (
    ChangePassword,
    CommandReport,
    FlavorSpec,
    ImageSpec,
    InstanceSpec,
    Message,
    RebuildServer,
    WithAdminPass,
)
from shared.sealing import Keyring, generate_key
from tests.support.rabbitmq import delete_topology, require_rabbitmq, unique_prefix
from tests.support.sealing import KEYRING
from tests.support.waiting import eventually

PASSWORD = "Sup3r-secret-pw"
HOST = "sealed-host"
QUEUES = ["work", bus_mod.REPORTS, bus_mod.HEARTBEATS, bus_mod.compute_queue(HOST)]


@pytest.fixture(params=["rabbitmq", "memory"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    if request.param == "memory":
        memory = MemoryBus(max_redeliveries=3)
        yield memory
        await memory.close()
        return
    url = await require_rabbitmq()
    prefix = unique_prefix()
    rabbit = RabbitBus(url, prefix=prefix, max_redeliveries=3)
    await rabbit.connect()
    yield rabbit
    await rabbit.close()
    await delete_topology(prefix, QUEUES)


def _commands(keyring: Keyring = KEYRING) -> list[WithAdminPass]:
    """A changePassword and a rebuild of one server, their passwords sealed by the gateway."""
    server_id = uuid.uuid4()
    change, rebuild = uuid.uuid4(), uuid.uuid4()
    instance = InstanceSpec(
        server_id=server_id,
        name="web",
        flavor=FlavorSpec(id="1", name="m1.tiny", vcpus=1, ram_mb=512, disk_gb=1),
        image=ImageSpec(id=uuid.uuid4(), name="cirros"),
    )
    return [
        ChangePassword(
            server_id=server_id,
            action_id=change,
            domain_name=instance.domain_name,
            admin_pass=ChangePassword.seal_admin_pass(
                keyring, PASSWORD, server_id=server_id, action_id=change
            ),
        ),
        RebuildServer(
            server_id=server_id,
            action_id=rebuild,
            instance=instance,
            admin_pass=RebuildServer.seal_admin_pass(
                keyring, PASSWORD, server_id=server_id, action_id=rebuild
            ),
        ),
    ]


async def _dead_letters(bus: Bus, expected: int) -> list[bytes]:
    """The bodies in the dead-letter queue, as the broker stores them (taken off it)."""
    if isinstance(bus, MemoryBus):
        await eventually(lambda: len(bus.dead) >= expected)
        return list(bus.dead)
    assert isinstance(bus, RabbitBus)
    connection = await aio_pika.connect(bus.url)
    bodies: list[bytes] = []
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(f"{bus.prefix}.dead", passive=True)
        deadline = asyncio.get_running_loop().time() + 15
        while len(bodies) < expected and asyncio.get_running_loop().time() < deadline:
            incoming = await queue.get(fail=False)
            if incoming is None:
                await asyncio.sleep(0.1)
                continue
            bodies.append(incoming.body)
            await incoming.ack()
    finally:
        await connection.close()
    return bodies


async def _dead_count(bus: Bus) -> int:
    if isinstance(bus, MemoryBus):
        return len(bus.dead)
    assert isinstance(bus, RabbitBus)
    connection = await aio_pika.connect(bus.url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(f"{bus.prefix}.dead", passive=True)
        return queue.declaration_result.message_count or 0
    finally:
        await connection.close()


def _park_spy(bus: Bus, monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The bodies RabbitMQ's bus publishes again to park a failed message for its retry."""
    parked: list[bytes] = []
    if isinstance(bus, RabbitBus):
        publish = bus._publish

        async def spy(routing_key: str, body: bytes, *, attempts: int) -> None:
            if attempts:
                parked.append(body)
            await publish(routing_key, body, attempts=attempts)

        monkeypatch.setattr(bus, "_publish", spy)
    return parked


def _holds_no_clear_text(body: bytes) -> None:
    assert PASSWORD.encode() not in body
    received = messages.parse(body)  # still a whole, valid message...
    assert isinstance(received, WithAdminPass)
    assert received.admin_pass.startswith("sealed:v1:")
    assert received.open_admin_pass(KEYRING) == PASSWORD  # ...that a retry could still use


async def test_failing_commands_are_parked_and_dead_lettered_sealed(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    await bus.declare("work")
    parked = _park_spy(bus, monkeypatch)
    opened: list[tuple[str, str]] = []

    async def handler(message: Message) -> None:
        assert isinstance(message, WithAdminPass)
        opened.append((message.type, message.open_admin_pass(KEYRING)))
        raise RuntimeError("the host is away (for the test)")

    await bus.consume("work", handler)
    for command in _commands():
        await bus.publish("work", command)
    dead = await _dead_letters(bus, 2)

    assert len(dead) == 2
    assert sorted(messages.parse(body).type for body in dead) == [
        "change_password",
        "rebuild_server",
    ]
    for body in dead:
        _holds_no_clear_text(body)
    if isinstance(bus, RabbitBus):
        assert len(parked) == 4  # each parked twice: max_redeliveries 3
    for body in parked:
        _holds_no_clear_text(body)
    assert sorted(opened) == sorted(
        [("change_password", PASSWORD)] * 3 + [("rebuild_server", PASSWORD)] * 3
    )  # every delivery, the retries too, opened the password


async def test_a_retried_command_still_opens_and_succeeds(bus: Bus) -> None:
    await bus.declare("work")
    deliveries: list[str] = []
    done: list[tuple[str, str]] = []

    async def handler(message: Message) -> None:
        assert isinstance(message, WithAdminPass)
        deliveries.append(message.type)
        if deliveries.count(message.type) < 3:
            raise RuntimeError("fails twice (for the test)")
        done.append((message.type, message.open_admin_pass(KEYRING)))

    await bus.consume("work", handler)
    for command in _commands():
        await bus.publish("work", command)
    await eventually(lambda: len(done) == 2)
    assert sorted(done) == [("change_password", PASSWORD), ("rebuild_server", PASSWORD)]
    await asyncio.sleep(0.3)
    assert len(deliveries) == 6
    assert await _dead_count(bus) == 0


async def test_an_agent_with_another_key_reports_the_failure_and_nothing_is_dead_lettered(
    bus: Bus,
) -> None:
    await bus.declare(bus_mod.REPORTS)
    reports: list[CommandReport] = []

    async def conductor(message: Message) -> None:
        if isinstance(message, CommandReport):
            reports.append(message)

    await bus.consume(bus_mod.REPORTS, conductor)
    driver = FakeDriver()
    agent = AgentService(
        HOST,
        bus,
        driver,
        power_sync_interval_s=0,
        keyring=Keyring.from_setting(generate_key()),  # not the gateway's (KEYRING)
    )
    await agent.start()
    try:
        commands = _commands()
        for command in commands:
            await bus.publish(bus_mod.compute_queue(HOST), command)
        await eventually(lambda: len(reports) == 2)
    finally:
        await agent.stop()
    for report in reports:
        assert not report.success
        assert report.fault is not None
        assert "STRATUS_MESSAGE_KEY" in report.fault.message
        assert KEYRING.sealing_key_id in report.fault.message
    assert {r.task_state for r in reports} == {"updating_password", "rebuilding"}
    assert driver.domains == {}  # nothing was done with a password it could not read
    await asyncio.sleep(0.6)  # past a first retry's delay: there was none
    assert await _dead_count(bus) == 0
