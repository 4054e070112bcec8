"""The RabbitMQ bus (aio-pika): durable queues, persistent messages, confirms, manual acks.

Topology, all names prefixed with the deployment's ``prefix``:

* one durable topic exchange ``<prefix>``; every queue ``<prefix>.<name>`` is bound to it with
  the routing key ``<name>``;
* a dead-letter exchange ``<prefix>.dlx`` and its queue ``<prefix>.dead`` for messages that do
  not parse or whose handler failed ``max_redeliveries`` times;
* heartbeats are neither persisted nor kept longer than a minute: an old one is worthless.

A failed handler's message is re-published with an attempt counter in a header and the
original acknowledged: classic queues keep no delivery count of their own. Each retry waits
longer than the last (``retry_delay_s``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aio_pika
import aio_pika.abc
import aio_pika.exceptions
import aiormq.exceptions

from shared import messages, metrics
from shared.bus import HEARTBEATS, Handler, PublishFailed, retry_delay_s
from shared.logging import request_context

log = logging.getLogger(__name__)

_ATTEMPTS = "x-stratus-attempts"
_TRANSIENT_TTL_MS = 60_000
_PUBLISH_TIMEOUT_S = 10.0
_CONNECT_RETRY_S = 2.0


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
    def __init__(self, url: str, *, prefix: str = "stratus", max_redeliveries: int = 5) -> None:
        self.url = url
        self.prefix = prefix
        self.max_redeliveries = max_redeliveries
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._publisher: aio_pika.abc.AbstractChannel | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None
        self._declared: set[str] = set()

    def _qname(self, name: str) -> str:
        return f"{self.prefix}.{name}"

    async def connect(self, *, retry_for_s: float = 60.0) -> None:
        """Connect, retrying while the broker is not reachable yet (it may start after us)."""
        deadline = asyncio.get_running_loop().time() + retry_for_s
        while True:
            try:
                self._connection = await aio_pika.connect_robust(self.url)
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
        dlx = await self._publisher.declare_exchange(
            f"{self.prefix}.dlx", aio_pika.ExchangeType.FANOUT, durable=True
        )
        dead = await self._publisher.declare_queue(self._qname("dead"), durable=True)
        await dead.bind(dlx)

    async def close(self) -> None:
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
        await self._publish(routing_key, messages.encode(message), attempts=0)
        metrics.message_published(message.type)

    async def _publish(self, routing_key: str, body: bytes, *, attempts: int) -> None:
        if self._exchange is None:
            raise PublishFailed("not connected to RabbitMQ")
        transient = routing_key == HEARTBEATS
        amqp_message = aio_pika.Message(
            body,
            content_type="application/json",
            delivery_mode=(
                aio_pika.DeliveryMode.NOT_PERSISTENT
                if transient
                else aio_pika.DeliveryMode.PERSISTENT
            ),
            headers={_ATTEMPTS: attempts} if attempts else None,
        )
        try:
            await self._exchange.publish(
                amqp_message, routing_key, mandatory=True, timeout=_PUBLISH_TIMEOUT_S
            )
        except (
            aio_pika.exceptions.AMQPError,
            aiormq.exceptions.AMQPError,
            ConnectionError,
            RuntimeError,
            TimeoutError,
        ) as exc:
            raise PublishFailed(
                f"RabbitMQ did not take the message for {routing_key}: {exc!r}"
            ) from exc

    async def consume(self, queue: str, handler: Handler, *, prefetch: int = 16) -> _Consumer:
        assert self._connection is not None, "connect() first"
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        amqp_queue = await self._declare_on(channel, queue)
        self._declared.add(queue)

        async def on_message(incoming: aio_pika.abc.AbstractIncomingMessage) -> None:
            await self._handle(queue, incoming, handler)

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
        if attempts >= self.max_redeliveries:
            log.exception("dead-lettering %s after %d attempts", message.type, attempts)
            await incoming.reject(requeue=False)
            metrics.message_dead_lettered(message.type)
            return
        log.exception("handler for %s failed (attempt %d); redelivering", message.type, attempts)
        await asyncio.sleep(retry_delay_s(attempts))
        try:
            await self._publish(queue, incoming.body, attempts=attempts)
        except PublishFailed:
            await incoming.nack(requeue=True)
            metrics.message_redelivered(message.type)
            return
        await incoming.ack()
        metrics.message_redelivered(message.type)


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
