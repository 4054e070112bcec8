"""The RabbitMQ bus (aio-pika): durable queues, persistent messages, confirms, manual acks.

Topology, all names prefixed with the deployment's ``prefix``:

* one durable topic exchange ``<prefix>``; every queue ``<prefix>.<name>`` is bound to it with
  the routing key ``<name>``;
* a dead-letter exchange ``<prefix>.dlx`` and its queue ``<prefix>.dead`` for messages that do
  not parse or whose handler failed ``max_redeliveries`` times;
* heartbeats are neither persisted nor kept longer than a minute: an old one is worthless;
* messages published to one routing key while the last publish to it awaits its confirm go
  together in the next AMQP message (shared/bus/batches.py), at most ``batch_max``; each is
  handled as if it had come alone.

A failed handler's message is re-published with an attempt counter in a header and the
original acknowledged: classic queues keep no delivery count of their own. Each retry waits
longer than the last (``retry_delay_s``).

Calls (``call``/``serve``) use AMQP's reply-to pattern: the caller consumes an exclusive
queue of its own, ``<prefix>.replies.<random>``, and sends each request with that queue's
name as ``reply_to`` and a fresh ``correlation_id``, transient and expiring with the caller's
timeout; a served queue ``<prefix>.<name>`` (no dead-lettering: an expired or refused call is
dropped) is answered through the default exchange to ``reply_to``, with the same
``correlation_id``, which finds the waiting caller.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from typing import Any

import aio_pika
import aio_pika.abc
import aio_pika.exceptions
import aiormq.exceptions
import yarl

from shared import messages, metrics
from shared.bus import (
    HEARTBEATS,
    CallTimeout,
    Handler,
    PublishFailed,
    Responder,
    batches,
    retry_delay_s,
)
from shared.logging import request_context

log = logging.getLogger(__name__)

_ATTEMPTS = "x-stratus-attempts"
_TRANSIENT_TTL_MS = 60_000
_PUBLISH_TIMEOUT_S = 10.0
_CONNECT_RETRY_S = 2.0
#: What a connection asks of the broker unless its URL says otherwise (``?heartbeat=``,
#: ``?timeout=``): aiormq's defaults (60 s each) take a connection whose packets are dropped
#: (a network partition: no FIN, no RST) for alive for three minutes, and a reconnection
#: into such a network waits a minute; with these the loss is noticed within about 30 s
#: (three missed heartbeats), and each reconnection attempt gives up after 10 s.
CONNECTION_DEFAULTS = {"heartbeat": "10", "timeout": "10"}


def with_connection_defaults(url: str) -> str:
    """``url`` with ``CONNECTION_DEFAULTS`` for what its query does not set."""
    parsed = yarl.URL(url)
    missing = {k: v for k, v in CONNECTION_DEFAULTS.items() if k not in parsed.query}
    return str(parsed.update_query(missing)) if missing else url


#: How a publish fails: the broker refused or returned it, the connection is down or
#: reconnecting (aio-pika raises RuntimeError on a closed channel), or no confirm came in time.
_PUBLISH_ERRORS = (
    aio_pika.exceptions.AMQPError,
    aiormq.exceptions.AMQPError,
    ConnectionError,
    RuntimeError,
    TimeoutError,
)

#: calls one served queue's consumer answers at once
_CALLS_PREFETCH = 16


class _Consumer:
    def __init__(self, channel: aio_pika.abc.AbstractChannel, queue: Any, tag: str) -> None:
        self._channel = channel
        self._queue = queue
        self._tag = tag

    async def cancel(self) -> None:
        try:
            await self._queue.cancel(self._tag)
            await self._channel.close()
        except (aio_pika.exceptions.AMQPError, ConnectionError, RuntimeError):
            log.debug("consumer channel already closed")


class RabbitBus:
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "stratus",
        max_redeliveries: int = 5,
        batch_max: int = 64,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.max_redeliveries = max_redeliveries
        #: messages per AMQP message at most (1: every message alone, as releases before
        #: batching sent them, which is what their consumers understand)
        self.batch_max = batch_max
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._publisher: aio_pika.abc.AbstractChannel | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None
        self._dlx: aio_pika.abc.AbstractExchange | None = None
        self._coalescers: dict[str, batches.Coalescer] = {}
        self._declared: set[str] = set()
        #: the calls sent and not answered yet, by correlation id
        self._pending: dict[str, asyncio.Future[bytes]] = {}
        self._reply_to = f"{prefix}.replies.{uuid.uuid4().hex}"
        self._replies: aio_pika.abc.AbstractQueue | None = None
        self._replies_lock = asyncio.Lock()

    def _qname(self, name: str) -> str:
        return f"{self.prefix}.{name}"

    async def connect(self, *, retry_for_s: float = 60.0) -> None:
        """Connect, retrying while the broker is not reachable yet (it may start after us)."""
        deadline = asyncio.get_running_loop().time() + retry_for_s
        while True:
            try:
                self._connection = await aio_pika.connect_robust(with_connection_defaults(self.url))
                break
            except (OSError, aio_pika.exceptions.AMQPError) as exc:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                log.warning("RabbitMQ not reachable (%s); retrying", exc)
                await asyncio.sleep(_CONNECT_RETRY_S)
        self._publisher = await self._connection.channel(
            publisher_confirms=True, on_return_raises=True
        )
        self._exchange = await self._publisher.declare_exchange(
            self.prefix, aio_pika.ExchangeType.TOPIC, durable=True
        )
        self._dlx = await self._publisher.declare_exchange(
            f"{self.prefix}.dlx", aio_pika.ExchangeType.FANOUT, durable=True
        )
        dead = await self._publisher.declare_queue(self._qname("dead"), durable=True)
        await dead.bind(self._dlx)

    async def close(self) -> None:
        for coalescer in self._coalescers.values():
            await coalescer.close()
        self._coalescers.clear()
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    @property
    def is_connected(self) -> bool:
        """The connection's socket is open now; false while ``connect_robust`` reconnects."""
        connection = self._connection
        if connection is None or connection.is_closed or connection.transport is None:
            return False
        return not connection.transport.connection.is_closed

    async def _declare_on(
        self, channel: aio_pika.abc.AbstractChannel, name: str
    ) -> aio_pika.abc.AbstractQueue:
        arguments: dict[str, Any] = {"x-dead-letter-exchange": f"{self.prefix}.dlx"}
        if name == HEARTBEATS:
            arguments["x-message-ttl"] = _TRANSIENT_TTL_MS
        queue = await channel.declare_queue(self._qname(name), durable=True, arguments=arguments)
        await queue.bind(self.prefix, routing_key=name)
        return queue

    async def declare(self, queue: str) -> None:
        if queue in self._declared:
            return
        assert self._publisher is not None, "connect() first"
        await self._declare_on(self._publisher, queue)
        self._declared.add(queue)

    async def publish(self, routing_key: str, message: messages.Message) -> None:
        body = messages.encode(message)
        if self.batch_max > 1:
            await self._coalescer(routing_key).publish(body)
        else:
            await self._publish(routing_key, body, attempts=0)
        metrics.message_published(message.type)

    def _coalescer(self, routing_key: str) -> batches.Coalescer:
        coalescer = self._coalescers.get(routing_key)
        if coalescer is None:

            async def send(bodies: Sequence[bytes]) -> None:
                await self._publish_batch(routing_key, bodies)

            coalescer = batches.Coalescer(send, max_messages=self.batch_max)
            self._coalescers[routing_key] = coalescer
        return coalescer

    async def _publish_batch(self, routing_key: str, bodies: Sequence[bytes]) -> None:
        if len(bodies) == 1:
            await self._publish(routing_key, bodies[0], attempts=0)
            return
        amqp_message = aio_pika.Message(
            batches.join(bodies),
            content_type=batches.BATCH_CONTENT_TYPE,
            delivery_mode=_delivery_mode(routing_key),
            headers={batches.BATCH_HEADER: len(bodies)},
        )
        await self._send(routing_key, amqp_message)

    async def _publish(self, routing_key: str, body: bytes, *, attempts: int) -> None:
        if self._exchange is None:
            raise PublishFailed("not connected to RabbitMQ")
        amqp_message = aio_pika.Message(
            body,
            content_type="application/json",
            delivery_mode=_delivery_mode(routing_key),
            headers={_ATTEMPTS: attempts} if attempts else None,
        )
        await self._send(routing_key, amqp_message)

    async def _send(self, routing_key: str, amqp_message: aio_pika.Message) -> None:
        """Publish to the exchange, confirmed, refused when no queue is bound to the key."""
        if self._exchange is None:
            raise PublishFailed("not connected to RabbitMQ")
        try:
            await self._exchange.publish(
                amqp_message, routing_key, mandatory=True, timeout=_PUBLISH_TIMEOUT_S
            )
        except _PUBLISH_ERRORS as exc:
            raise PublishFailed(
                f"RabbitMQ did not take the message for {routing_key}: {exc!r}"
            ) from exc

    async def consume(self, queue: str, handler: Handler, *, prefetch: int = 16) -> _Consumer:
        assert self._connection is not None, "connect() first"
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        amqp_queue = await self._declare_on(channel, queue)
        self._declared.add(queue)
        # a batch takes one prefetch slot for all its messages: this keeps the handlers
        # running at once to ``prefetch`` (an agent's concurrency), batches or not
        running = asyncio.Semaphore(prefetch)

        async def limited(message: messages.Message) -> None:
            async with running:
                await handler(message)

        async def on_message(incoming: aio_pika.abc.AbstractIncomingMessage) -> None:
            if (incoming.headers or {}).get(batches.BATCH_HEADER):
                await self._handle_batch(queue, incoming, limited)
            else:
                await self._handle(queue, incoming, limited)

        tag = await amqp_queue.consume(on_message)
        return _Consumer(channel, amqp_queue, tag)

    async def _handle(
        self, queue: str, incoming: aio_pika.abc.AbstractIncomingMessage, handler: Handler
    ) -> None:
        try:
            message = messages.parse(incoming.body)
        except ValueError:
            log.error("dead-lettering a message that does not parse: %.200r", incoming.body)
            await incoming.reject(requeue=False)
            metrics.message_dead_lettered(metrics.UNPARSABLE)
            return
        try:
            await handler(message)
        except Exception:
            with request_context(message.request_id):  # its log lines carry the request id
                await self._retry_or_dead_letter(queue, incoming, message)
            return
        await incoming.ack()
        metrics.message_consumed(message.type)

    async def _retry_or_dead_letter(
        self,
        queue: str,
        incoming: aio_pika.abc.AbstractIncomingMessage,
        message: messages.Message,
    ) -> None:
        previous = (incoming.headers or {}).get(_ATTEMPTS, 0)
        attempts = (previous if isinstance(previous, int) else 0) + 1
        if self._exhausted(message, attempts):
            await incoming.reject(requeue=False)
        elif await self._send_back(queue, incoming.body, message, attempts):
            await incoming.ack()
        else:
            await incoming.nack(requeue=True)

    def _exhausted(self, message: messages.Message, attempts: int) -> bool:
        """Whether a message that failed its ``attempts``-th time is dead (said so in the
        log, with the handler's exception: call it where that is being handled)."""
        if attempts < self.max_redeliveries:
            return False
        log.exception("dead-lettering %s after %d attempts", message.type, attempts)
        metrics.message_dead_lettered(message.type)
        return True

    async def _send_back(
        self, queue: str, body: bytes, message: messages.Message, attempts: int
    ) -> bool:
        """Publish ``body`` again, for its next attempt, after the wait; False when the
        broker did not take it (call it where the handler's exception is being handled)."""
        log.exception("handler for %s failed (attempt %d); redelivering", message.type, attempts)
        metrics.message_redelivered(message.type)
        await asyncio.sleep(retry_delay_s(attempts))
        try:
            await self._publish(queue, body, attempts=attempts)
        except PublishFailed:
            return False
        return True

    async def _handle_batch(
        self, queue: str, incoming: aio_pika.abc.AbstractIncomingMessage, handler: Handler
    ) -> None:
        """Handle each message of a batch as if it had come alone; acknowledge the batch
        once every one is handled, sent back or dead-lettered. When one could be neither
        sent back nor dead-lettered, the whole batch comes back: the others are handled
        again, which handlers allow (delivery is at least once)."""
        settled = await asyncio.gather(
            *(self._handle_one(queue, body, handler) for body in batches.split(incoming.body))
        )
        if all(settled):
            await incoming.ack()
        else:
            await incoming.nack(requeue=True)

    async def _handle_one(self, queue: str, body: bytes, handler: Handler) -> bool:
        """One message of a batch; False when it must come again with the batch."""
        try:
            message = messages.parse(body)
        except ValueError:
            log.error("dead-lettering a message that does not parse: %.200r", body)
            metrics.message_dead_lettered(metrics.UNPARSABLE)
            return await self._dead_letter(body)
        try:
            await handler(message)
        except Exception:
            with request_context(message.request_id):
                if self._exhausted(message, 1):
                    return await self._dead_letter(body)
                return await self._send_back(queue, body, message, 1)
        metrics.message_consumed(message.type)
        return True

    async def _dead_letter(self, body: bytes) -> bool:
        """Put one message of a batch in the dead-letter queue, as rejecting a lone one
        does; False when the broker did not take it."""
        if self._dlx is None:
            return False
        try:
            await self._dlx.publish(
                aio_pika.Message(
                    body,
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key="",
                timeout=_PUBLISH_TIMEOUT_S,
            )
        except _PUBLISH_ERRORS:
            log.warning("could not dead-letter a message; its batch comes again")
            return False
        return True

    # --- calls -----------------------------------------------------------------------------

    async def call(
        self, routing_key: str, message: messages.Message, *, timeout_s: float
    ) -> messages.Message:
        reply_to = await self._reply_queue()
        correlation_id = uuid.uuid4().hex
        answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = answer
        try:
            await self._send(
                routing_key,
                aio_pika.Message(
                    messages.encode(message),
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT,
                    correlation_id=correlation_id,
                    reply_to=reply_to,
                    expiration=timeout_s,  # not taken by then: nobody waits for it any more
                ),
            )
            metrics.message_published(message.type)
            body = await asyncio.wait_for(answer, timeout_s)
        except TimeoutError:
            raise CallTimeout(f"no answer to {message.type} within {timeout_s} s") from None
        finally:
            self._pending.pop(correlation_id, None)
        try:
            return messages.parse(body)
        except ValueError:
            raise CallTimeout(f"the answer to {message.type} does not parse") from None

    async def _reply_queue(self) -> str:
        """The name of this bus's reply queue, declared and consumed at the first call (a
        name of our own, so a robust reconnect declares the same queue again)."""
        async with self._replies_lock:
            if self._replies is None:
                if self._connection is None:
                    raise PublishFailed("not connected to RabbitMQ")
                channel = await self._connection.channel()
                queue = await channel.declare_queue(
                    self._reply_to, exclusive=True, auto_delete=True
                )
                await queue.consume(self._on_reply, no_ack=True)
                self._replies = queue
        return self._reply_to

    async def _on_reply(self, incoming: aio_pika.abc.AbstractIncomingMessage) -> None:
        answer = self._pending.get(incoming.correlation_id or "")
        if answer is not None and not answer.done():
            answer.set_result(incoming.body)

    async def serve(self, queue: str, responder: Responder) -> _Consumer:
        assert self._connection is not None, "connect() first"
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=_CALLS_PREFETCH)
        amqp_queue = await channel.declare_queue(self._qname(queue), durable=True)
        await amqp_queue.bind(self.prefix, routing_key=queue)

        async def on_call(incoming: aio_pika.abc.AbstractIncomingMessage) -> None:
            await self._answer(channel, incoming, responder)

        tag = await amqp_queue.consume(on_call)
        return _Consumer(channel, amqp_queue, tag)

    async def _answer(
        self,
        channel: aio_pika.abc.AbstractChannel,
        incoming: aio_pika.abc.AbstractIncomingMessage,
        responder: Responder,
    ) -> None:
        """Answer one call to its ``reply_to``; a call that does not parse, or that the
        responder cannot answer, is dropped (at most once: its caller times out)."""
        try:
            request = messages.parse(incoming.body)
        except ValueError:
            log.error("dropping a call that does not parse: %.200r", incoming.body)
            await incoming.reject(requeue=False)
            return
        try:
            reply = await responder(request)
        except Exception:
            with request_context(request.request_id):
                log.exception("could not answer %s; its caller will time out", request.type)
            await incoming.reject(requeue=False)
            return
        if incoming.reply_to:
            await self._reply(channel, incoming, reply)
        await incoming.ack()
        metrics.message_consumed(request.type)

    async def _reply(
        self,
        channel: aio_pika.abc.AbstractChannel,
        incoming: aio_pika.abc.AbstractIncomingMessage,
        reply: messages.Message,
    ) -> None:
        try:
            await channel.default_exchange.publish(
                aio_pika.Message(
                    messages.encode(reply),
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT,
                    correlation_id=incoming.correlation_id,
                ),
                routing_key=incoming.reply_to or "",
                timeout=_PUBLISH_TIMEOUT_S,
            )
        except (aio_pika.exceptions.AMQPError, ConnectionError, RuntimeError, TimeoutError):
            log.warning("could not send the answer to %s; its caller will time out", reply.type)


def _delivery_mode(routing_key: str) -> aio_pika.DeliveryMode:
    """Heartbeats are not persisted (an old one is worthless); everything else is."""
    if routing_key == HEARTBEATS:
        return aio_pika.DeliveryMode.NOT_PERSISTENT
    return aio_pika.DeliveryMode.PERSISTENT


# --- what operators ask of the broker (stratus status) ---------------------------------------


class BrokerUnreachable(Exception):
    """The broker could not be reached or did not answer; the message says how."""


async def dead_lettered(url: str, *, prefix: str = "stratus", timeout_s: float = 5.0) -> int:
    """How many messages wait in the deployment's dead-letter queue ``<prefix>.dead``: 0 when
    no Stratus process has declared it yet. One short connection, no robust reconnects: an
    operator's question wants a quick answer, not a retry loop."""
    try:
        connection = await aio_pika.connect(url, timeout=timeout_s)
    except (OSError, aio_pika.exceptions.AMQPError, TimeoutError) as exc:
        raise BrokerUnreachable(f"{exc!r}") from exc
    try:
        channel = await connection.channel()
        try:
            queue = await channel.declare_queue(f"{prefix}.dead", passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return 0
        return int(queue.declaration_result.message_count or 0)
    except (OSError, aio_pika.exceptions.AMQPError, TimeoutError) as exc:
        raise BrokerUnreachable(f"{exc!r}") from exc
    finally:
        await connection.close()
