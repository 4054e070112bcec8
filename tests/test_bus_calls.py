"""Calls on both buses (RabbitMQ and in-process): a question whose sender waits for the answer
(shared/bus: ``call``/``serve``), as a gateway asks a host where a console listens."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from shared.bus import Bus, CallTimeout, PublishFailed
from shared.bus.memory import MemoryBus
from shared.bus.rabbitmq import RabbitBus
from shared.messages import ConsoleAnswer, GetConsole, Message
from tests.support.rabbitmq import delete_topology, require_rabbitmq, unique_prefix

QUEUE = "calls.h1"


@pytest.fixture(params=["memory", "rabbitmq"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    if request.param == "memory":
        memory = MemoryBus()
        yield memory
        await memory.close()
        return
    url = await require_rabbitmq()
    prefix = unique_prefix()
    rabbit = RabbitBus(url, prefix=prefix)
    await rabbit.connect()
    yield rabbit
    await rabbit.close()
    await delete_topology(prefix, [QUEUE])


def _question(port: int = 0) -> GetConsole:
    return GetConsole(
        request_id=f"req-{port}",
        server_id=uuid.uuid4(),
        domain_name=f"instance-{port}",
        protocol="vnc",
    )


async def _echo_port(message: Message) -> Message:
    """Answers each question with its request id's number as the port."""
    assert isinstance(message, GetConsole)
    port = int(message.request_id.removeprefix("req-"))
    return ConsoleAnswer(request_id=message.request_id, host="127.0.0.1", port=port)


async def test_a_call_gets_its_own_answer(bus: Bus) -> None:
    await bus.serve(QUEUE, _echo_port)
    answers = await asyncio.gather(
        *(bus.call(QUEUE, _question(port), timeout_s=5) for port in range(5900, 5910))
    )
    assert [a.port for a in answers if isinstance(a, ConsoleAnswer)] == list(range(5900, 5910))
    assert all(a.request_id == f"req-{a.port}" for a in answers if isinstance(a, ConsoleAnswer))


async def test_a_call_nobody_serves_fails_at_once(bus: Bus) -> None:
    with pytest.raises(PublishFailed):
        await bus.call(f"calls.nobody-{uuid.uuid4().hex}", _question(1), timeout_s=5)


async def test_a_responder_that_fails_leaves_its_caller_to_time_out(bus: Bus) -> None:
    async def failing(message: Message) -> Message:
        raise RuntimeError("the responder fails, for the test")

    await bus.serve(QUEUE, failing)
    started = asyncio.get_running_loop().time()
    with pytest.raises(CallTimeout):
        await bus.call(QUEUE, _question(1), timeout_s=0.5)
    assert asyncio.get_running_loop().time() - started < 3


async def test_a_late_answer_is_dropped_and_the_next_call_gets_its_own(bus: Bus) -> None:
    slow = asyncio.Event()

    async def slow_first(message: Message) -> Message:
        if message.request_id == "req-1":
            await slow.wait()
        return await _echo_port(message)

    await bus.serve(QUEUE, slow_first)
    with pytest.raises(CallTimeout):
        await bus.call(QUEUE, _question(1), timeout_s=0.3)
    slow.set()  # the first answer now comes, to nobody
    answer = await bus.call(QUEUE, _question(2), timeout_s=5)
    assert isinstance(answer, ConsoleAnswer) and answer.port == 2
