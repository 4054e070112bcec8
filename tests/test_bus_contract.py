"""The promises of docs/architecture.md, checked against both buses: RabbitMQ and in-process."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest

from shared.bus import Bus, PublishFailed
from shared.bus.memory import MemoryBus
from shared.bus.rabbitmq import RabbitBus
from shared.messages import Heartbeat, HostCapacity, Message
from tests.support.rabbitmq import delete_topology, require_rabbitmq, unique_prefix
from tests.support.waiting import eventually

QUEUES = ["work", "heartbeats"]


def _heartbeat(host: str = "h1") -> Heartbeat:
    return Heartbeat(
        host=host,
        capacity=HostCapacity(
            hypervisor_type="fake", hypervisor_uri="fake://", vcpus=1, ram_mb=1, disk_gb=1
        ),
    )


@pytest.fixture(params=["memory", "rabbitmq"])
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


async def _collect(bus: Bus, queue: str, *, fail_times: int = 0) -> list[Message]:
    seen: list[Message] = []

    async def handler(message: Message) -> None:
        seen.append(message)
        if len(seen) <= fail_times:
            raise RuntimeError("handler failure for the test")

    await bus.consume(queue, handler, prefetch=4)
    return seen


async def test_a_published_message_arrives_intact(bus: Bus) -> None:
    await bus.declare("work")
    seen = await _collect(bus, "work")
    sent = _heartbeat()
    await bus.publish("work", sent)
    await eventually(lambda: len(seen) == 1)
    assert seen[0] == sent


async def test_messages_wait_in_a_declared_queue_for_a_late_consumer(bus: Bus) -> None:
    await bus.declare("work")
    sent = [_heartbeat(f"h{i}") for i in range(3)]
    for message in sent:
        await bus.publish("work", message)
    seen = await _collect(bus, "work")
    await eventually(lambda: len(seen) == 3)
    assert sorted(m.message_id for m in seen) == sorted(m.message_id for m in sent)


async def test_publishing_where_no_queue_listens_fails_loudly(bus: Bus) -> None:
    with pytest.raises(PublishFailed):
        await bus.publish(f"nobody-{uuid.uuid4().hex}", _heartbeat())


async def test_a_failing_handler_gets_the_message_again(bus: Bus) -> None:
    await bus.declare("work")
    seen = await _collect(bus, "work", fail_times=2)
    sent = _heartbeat()
    await bus.publish("work", sent)
    await eventually(lambda: len(seen) == 3)
    assert {m.message_id for m in seen} == {sent.message_id}
    await asyncio.sleep(0.2)
    assert len(seen) == 3  # acknowledged after the success: not delivered a fourth time


async def test_a_message_that_keeps_failing_is_dead_lettered(bus: Bus) -> None:
    await bus.declare("work")
    seen = await _collect(bus, "work", fail_times=100)
    await bus.publish("work", _heartbeat())
    await eventually(lambda: len(seen) == 3)
    await asyncio.sleep(0.3)
    assert len(seen) == 3
    assert await _dead_letters(bus) == 1


async def _dead_letters(bus: Bus) -> int:
    if isinstance(bus, MemoryBus):
        return len(bus.dead)
    assert isinstance(bus, RabbitBus)
    connection = await aio_pika.connect(bus.url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(f"{bus.prefix}.dead", passive=True)
        count = queue.declaration_result.message_count
        assert count is not None
        return count
    finally:
        await connection.close()
