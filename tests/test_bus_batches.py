"""Messages published together travel as one AMQP message (shared/bus/batches.py) and are
handled as if each had come alone: checked on a real RabbitMQ, and the coalescing on its own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import aio_pika
import pytest

from shared.bus import PublishFailed
from shared.bus.batches import BATCH_HEADER, MAX_BATCH_BYTES, Coalescer
from shared.bus.rabbitmq import RabbitBus
from shared.messages import Heartbeat, HostCapacity, Message, encode
from tests.support.rabbitmq import delete_topology, require_rabbitmq, unique_prefix
from tests.support.waiting import eventually

QUEUES = ["work"]


def _heartbeat(host: str) -> Heartbeat:
    return Heartbeat(
        host=host,
        capacity=HostCapacity(
            hypervisor_type="fake", hypervisor_uri="fake://", vcpus=1, ram_mb=1, disk_gb=1
        ),
    )


@pytest.fixture
async def rabbit() -> AsyncIterator[RabbitBus]:
    url = await require_rabbitmq()
    prefix = unique_prefix()
    bus = RabbitBus(url, prefix=prefix, max_redeliveries=3)
    await bus.connect()
    await bus.declare("work")
    yield bus
    await bus.close()
    await delete_topology(prefix, QUEUES)


async def _raw(bus: RabbitBus, queue: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Every AMQP message waiting in ``queue``, taken off it."""
    connection = await aio_pika.connect(bus.url)
    taken = []
    try:
        channel = await connection.channel()
        amqp_queue = await channel.declare_queue(f"{bus.prefix}.{queue}", passive=True)
        while (incoming := await amqp_queue.get(fail=False, no_ack=True)) is not None:
            taken.append(incoming)
    finally:
        await connection.close()
    return taken


async def _publish_together(bus: RabbitBus, sent: Sequence[Message]) -> None:
    await asyncio.gather(*(bus.publish("work", message) for message in sent))


async def test_messages_published_together_share_amqp_messages(rabbit: RabbitBus) -> None:
    sent = [_heartbeat(f"h{i}") for i in range(50)]
    await _publish_together(rabbit, sent)
    raw = await _raw(rabbit, "work")
    assert raw[0].content_type == "application/x-ndjson"
    assert len(raw) == 1  # all published in one tick: one batch
    counts = [int(m.headers.get(BATCH_HEADER) or 1) for m in raw]  # type: ignore[call-overload]
    assert sum(counts) == 50
    lines = [line for m in raw for line in m.body.split(b"\n")]
    assert lines == [encode(m) for m in sent]  # in the order published


async def test_a_lone_message_is_sent_at_once_and_alone(rabbit: RabbitBus) -> None:
    for i in range(3):
        await rabbit.publish("work", _heartbeat(f"h{i}"))
    raw = await _raw(rabbit, "work")
    assert [m.headers.get(BATCH_HEADER) for m in raw] == [None, None, None]
    assert [m.content_type for m in raw] == ["application/json"] * 3


async def test_more_than_batch_max_at_once_go_in_several(rabbit: RabbitBus) -> None:
    sent = [_heartbeat(f"h{i}") for i in range(150)]
    await _publish_together(rabbit, sent)
    raw = await _raw(rabbit, "work")
    assert [m.headers.get(BATCH_HEADER) for m in raw] == [64, 64, 22]
    assert [line for m in raw for line in m.body.split(b"\n")] == [encode(m) for m in sent]


async def test_batch_max_one_sends_every_message_alone() -> None:
    url = await require_rabbitmq()
    prefix = unique_prefix()
    bus = RabbitBus(url, prefix=prefix, batch_max=1)
    await bus.connect()
    try:
        await bus.declare("work")
        await _publish_together(bus, [_heartbeat(f"h{i}") for i in range(20)])
        raw = await _raw(bus, "work")
        assert len(raw) == 20
        assert all(m.headers.get(BATCH_HEADER) is None for m in raw)
    finally:
        await bus.close()
        await delete_topology(prefix, QUEUES)


async def test_each_message_of_a_batch_is_handled_once(rabbit: RabbitBus) -> None:
    sent = [_heartbeat(f"h{i}") for i in range(40)]
    await _publish_together(rabbit, sent)  # queued before anyone consumes: batched
    seen: list[Message] = []

    async def handler(message: Message) -> None:
        seen.append(message)

    await rabbit.consume("work", handler, prefetch=8)
    await eventually(lambda: len(seen) == 40)
    await asyncio.sleep(0.3)
    assert sorted(m.message_id for m in seen) == sorted(m.message_id for m in sent)


async def test_a_failing_message_comes_again_alone(rabbit: RabbitBus) -> None:
    sent = [_heartbeat(f"h{i}") for i in range(20)]
    await _publish_together(rabbit, sent)
    failing = sent[7].message_id
    seen: list[Message] = []

    async def handler(message: Message) -> None:
        seen.append(message)
        if message.message_id == failing and sum(m.message_id == failing for m in seen) == 1:
            raise RuntimeError("handler failure for the test")

    await rabbit.consume("work", handler, prefetch=8)
    await eventually(lambda: len(seen) == 21)
    await asyncio.sleep(0.8)  # past the retry's wait: nothing else comes again
    ids = [m.message_id for m in seen]
    assert ids.count(failing) == 2
    assert all(ids.count(m.message_id) == 1 for m in sent if m.message_id != failing)


async def test_a_message_that_keeps_failing_in_a_batch_is_dead_lettered_alone(
    rabbit: RabbitBus,
) -> None:
    sent = [_heartbeat(f"h{i}") for i in range(10)]
    await _publish_together(rabbit, sent)
    doomed = sent[3].message_id
    seen: list[Message] = []

    async def handler(message: Message) -> None:
        seen.append(message)
        if message.message_id == doomed:
            raise RuntimeError("always fails")

    await rabbit.consume("work", handler, prefetch=8)
    await eventually(lambda: len(seen) == 9 + 3, timeout_s=15)  # 3 = max_redeliveries
    await asyncio.sleep(0.3)
    dead = await _raw(rabbit, "dead")
    assert [Heartbeat.model_validate_json(m.body).message_id for m in dead] == [doomed]


async def test_a_line_that_does_not_parse_is_dead_lettered_alone(rabbit: RabbitBus) -> None:
    good = [_heartbeat("h1"), _heartbeat("h2")]
    connection = await aio_pika.connect(rabbit.url)
    try:
        channel = await connection.channel()
        await channel.default_exchange.publish(
            aio_pika.Message(
                b"\n".join([encode(good[0]), b'{"type": "nonsense"}', encode(good[1])]),
                headers={BATCH_HEADER: 3},
            ),
            routing_key=f"{rabbit.prefix}.work",
        )
    finally:
        await connection.close()
    seen: list[Message] = []

    async def handler(message: Message) -> None:
        seen.append(message)

    await rabbit.consume("work", handler)
    await eventually(lambda: len(seen) == 2)
    await asyncio.sleep(0.3)
    assert [m.body for m in await _raw(rabbit, "dead")] == [b'{"type": "nonsense"}']
    assert await _raw(rabbit, "work") == []  # the batch was acknowledged


async def test_a_batch_runs_no_more_handlers_at_once_than_prefetch(rabbit: RabbitBus) -> None:
    await _publish_together(rabbit, [_heartbeat(f"h{i}") for i in range(30)])
    running = 0
    most = 0
    done = 0

    async def handler(message: Message) -> None:
        nonlocal running, most, done
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1
        done += 1

    await rabbit.consume("work", handler, prefetch=3)
    await eventually(lambda: done == 30)
    assert most == 3


# --- the coalescing alone ---------------------------------------------------------------------


class _Recorder:
    """A send that records its batches and waits to be released, or fails."""

    def __init__(self, fail: bool = False) -> None:
        self.batches: list[list[bytes]] = []
        self.fail = fail
        self.release = asyncio.Event()

    async def __call__(self, bodies: Sequence[bytes]) -> None:
        self.batches.append(list(bodies))
        await self.release.wait()
        if self.fail:
            raise PublishFailed("refused for the test")


async def test_one_send_in_flight_the_rest_wait_together() -> None:
    send = _Recorder()
    coalescer = Coalescer(send, max_messages=4)
    publishes = [asyncio.create_task(coalescer.publish(b"%d" % i)) for i in range(7)]
    await asyncio.sleep(0.01)
    assert send.batches == [[b"0", b"1", b"2", b"3"]]  # all queued in one tick: one batch
    send.release.set()
    await asyncio.gather(*publishes)
    assert send.batches == [[b"0", b"1", b"2", b"3"], [b"4", b"5", b"6"]]


async def test_a_refused_batch_fails_each_of_its_publishers() -> None:
    send = _Recorder(fail=True)
    send.release.set()
    coalescer = Coalescer(send, max_messages=64)
    results = await asyncio.gather(
        *(coalescer.publish(b"x") for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, PublishFailed) for r in results)


async def test_a_batch_stays_under_the_size_limit_but_a_big_message_still_goes() -> None:
    send = _Recorder()
    send.release.set()
    coalescer = Coalescer(send, max_messages=64)
    big = b"x" * (MAX_BATCH_BYTES // 2 + 1)
    await asyncio.gather(*(coalescer.publish(body) for body in (big, big, b"small")))
    assert send.batches == [[big], [big, b"small"]]  # two bigs would pass the limit
    huge = b"y" * (MAX_BATCH_BYTES * 2)
    await coalescer.publish(huge)
    assert send.batches[-1] == [huge]


async def test_closing_tells_the_waiting_publishers() -> None:
    send = _Recorder()
    coalescer = Coalescer(send, max_messages=64)
    publishes = [asyncio.create_task(coalescer.publish(b"%d" % i)) for i in range(3)]
    await asyncio.sleep(0.01)
    await coalescer.close()
    results = await asyncio.gather(*publishes, return_exceptions=True)
    assert all(isinstance(r, PublishFailed) for r in results)
