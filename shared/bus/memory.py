"""The in-process bus of ``stratus up`` and the fast tests: asyncio queues, RabbitMQ's semantics.

Messages travel as encoded bytes, exactly as on RabbitMQ, so a model that does not survive
serialization fails here too. Consumers of one queue compete; a failing handler sees the
message again up to ``max_redeliveries`` times, then it goes to ``dead``. Calls wait in
a queue of their own until a responder takes them, each with the future its caller awaits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from shared import messages, metrics
from shared.bus import CallTimeout, Handler, PublishFailed, Responder, retry_delay_s
from shared.logging import request_context

log = logging.getLogger(__name__)

#: a call waiting for its responder: the request's bytes, and where its answer's go
_Call = tuple[bytes, asyncio.Future[bytes]]


class _Consumer:
    def __init__(self, task: asyncio.Task[None]) -> None:
        self._task = task

    async def cancel(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class MemoryBus:
    def __init__(self, *, max_redeliveries: int = 5) -> None:
        self.max_redeliveries = max_redeliveries
        self._queues: dict[str, asyncio.Queue[tuple[bytes, int]]] = {}
        self._calls: dict[str, asyncio.Queue[_Call]] = {}
        self._consumers: list[_Consumer] = []
        self._running: set[asyncio.Task[None]] = set()
        self.dead: list[bytes] = []

    async def connect(self) -> None:
        return None

    @property
    def is_connected(self) -> bool:
        """Always: there is no broker to lose."""
        return True

    async def close(self) -> None:
        for consumer in self._consumers:
            await consumer.cancel()
        self._consumers.clear()
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)

    async def declare(self, queue: str) -> None:
        self._queues.setdefault(queue, asyncio.Queue())

    async def publish(self, routing_key: str, message: messages.Message) -> None:
        queue = self._queues.get(routing_key)
        if queue is None:
            raise PublishFailed(f"no queue is bound to {routing_key!r}")
        queue.put_nowait((messages.encode(message), 0))
        metrics.message_published(message.type)

    async def consume(self, queue: str, handler: Handler, *, prefetch: int = 16) -> _Consumer:
        await self.declare(queue)
        consumer = _Consumer(
            asyncio.create_task(self._pump(self._queues[queue], handler, prefetch))
        )
        self._consumers.append(consumer)
        return consumer

    async def _pump(
        self, queue: asyncio.Queue[tuple[bytes, int]], handler: Handler, prefetch: int
    ) -> None:
        slots = asyncio.Semaphore(prefetch)
        while True:
            body, attempts = await queue.get()
            await slots.acquire()
            task = asyncio.create_task(self._deliver(queue, handler, body, attempts))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
            task.add_done_callback(lambda _: slots.release())

    async def _deliver(
        self,
        queue: asyncio.Queue[tuple[bytes, int]],
        handler: Handler,
        body: bytes,
        attempts: int,
    ) -> None:
        try:
            message = messages.parse(body)
        except ValueError:
            log.error("dead-lettering a message that does not parse: %.200r", body)
            self.dead.append(body)
            metrics.message_dead_lettered(metrics.UNPARSABLE)
            return
        try:
            await handler(message)
        except asyncio.CancelledError:
            queue.put_nowait((body, attempts))  # not acknowledged: it comes back
            raise
        except Exception:
            with request_context(message.request_id):  # its log lines carry the request id
                self._retry_or_dead_letter(queue, message, body, attempts)
        else:
            metrics.message_consumed(message.type)

    def _retry_or_dead_letter(
        self,
        queue: asyncio.Queue[tuple[bytes, int]],
        message: messages.Message,
        body: bytes,
        attempts: int,
    ) -> None:
        if attempts + 1 >= self.max_redeliveries:
            log.exception("dead-lettering %s after %d attempts", message.type, attempts + 1)
            self.dead.append(body)
            metrics.message_dead_lettered(message.type)
        else:
            log.exception("handler for %s failed; redelivering", message.type)
            asyncio.get_running_loop().call_later(
                retry_delay_s(attempts + 1), queue.put_nowait, (body, attempts + 1)
            )
            metrics.message_redelivered(message.type)

    # --- calls ---------------------------------------------------------------------------

    async def call(
        self, routing_key: str, message: messages.Message, *, timeout_s: float
    ) -> messages.Message:
        calls = self._calls.get(routing_key)
        if calls is None:
            raise PublishFailed(f"nobody serves calls on {routing_key!r}")
        answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        calls.put_nowait((messages.encode(message), answer))
        metrics.message_published(message.type)
        try:
            body = await asyncio.wait_for(answer, timeout_s)
        except TimeoutError:
            raise CallTimeout(f"no answer to {message.type} within {timeout_s} s") from None
        try:
            return messages.parse(body)
        except ValueError:
            raise CallTimeout(f"the answer to {message.type} does not parse") from None

    async def serve(self, queue: str, responder: Responder) -> _Consumer:
        calls = self._calls.setdefault(queue, asyncio.Queue())
        consumer = _Consumer(asyncio.create_task(self._take_calls(calls, responder)))
        self._consumers.append(consumer)
        return consumer

    async def _take_calls(self, calls: asyncio.Queue[_Call], responder: Responder) -> None:
        while True:
            body, answer = await calls.get()
            task = asyncio.create_task(self._answer(body, answer, responder))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _answer(
        self, body: bytes, answer: asyncio.Future[bytes], responder: Responder
    ) -> None:
        """Answer one call, unless its caller gave up waiting already (timed out)."""
        if answer.done():
            return
        try:
            request = messages.parse(body)
        except ValueError:
            log.error("dropping a call that does not parse: %.200r", body)
            return
        try:
            reply = await responder(request)
        except Exception:
            with request_context(request.request_id):
                log.exception("could not answer %s; its caller will time out", request.type)
            return
        if not answer.done():
            answer.set_result(messages.encode(reply))
        metrics.message_consumed(request.type)
