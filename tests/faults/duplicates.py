"""Deliver every command and report twice, on purpose.

The bus promises at-least-once delivery, so every handler must be idempotent. This copies
each message published to the conductor's queue, to any agent's queue and to the reports
queue (a queue of its own bound with the same routing keys), and publishes the copy again
to the same routing key: the consumer gets the same message (same ``message_id``) again,
once at once (as a redelivery after a lost ack) and once ``late_s`` later, after the actions
that followed it (as the bus's own retry, which re-publishes at the queue's tail, or a
redelivery to a competing consumer can deliver it). Copies carry a header so they are not
copied again.
"""

from __future__ import annotations

import asyncio

import aio_pika
import aio_pika.abc

from shared import bus as bus_mod
from shared import messages

_COPY = "x-stratus-fault-copy"
_ROUTES = (bus_mod.CONDUCTOR, bus_mod.REPORTS, bus_mod.compute_queue("*"))


class Duplicator:
    def __init__(self, amqp_url: str, prefix: str, *, late_s: float = 3.0) -> None:
        self.amqp_url = amqp_url
        self.prefix = prefix
        self.late_s = late_s
        self.copied: dict[str, int] = {}
        self._late: set[asyncio.Task[None]] = set()
        self._closing = False
        #: copies the broker did not take (the reason of each)
        self.failed: list[str] = []
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None

    async def start(self) -> None:
        self._connection = await aio_pika.connect_robust(self.amqp_url)
        channel = await self._connection.channel(publisher_confirms=True)
        self._exchange = await channel.get_exchange(self.prefix)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        for route in _ROUTES:
            await queue.bind(self.prefix, routing_key=route)
        await queue.consume(self._on_message, no_ack=True)  # the copy is all that matters

    async def _on_message(self, incoming: aio_pika.abc.AbstractIncomingMessage) -> None:
        if (incoming.headers or {}).get(_COPY) or self._closing:
            return
        kind = _kind(incoming.body)
        if kind is None or kind == "power_state_report":
            return  # periodic and harmless to repeat anyway
        route = incoming.routing_key or ""
        await self._copy(incoming.body, route, kind)
        late = asyncio.create_task(self._copy_later(incoming.body, route, f"{kind} (late)"))
        self._late.add(late)
        late.add_done_callback(self._late.discard)

    async def _copy_later(self, body: bytes, routing_key: str, kind: str) -> None:
        await asyncio.sleep(self.late_s)
        await self._copy(body, routing_key, kind)

    async def _copy(self, body: bytes, routing_key: str, kind: str) -> None:
        assert self._exchange is not None
        await self._exchange.publish(
            aio_pika.Message(
                body,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                headers={_COPY: 1},
            ),
            routing_key=routing_key,
        )
        self.copied[kind] = self.copied.get(kind, 0) + 1

    async def close(self) -> None:
        """Stop copying; the late copies already promised are sent first."""
        self._closing = True
        for result in await asyncio.gather(*self._late, return_exceptions=True):
            if isinstance(result, BaseException):
                self.failed.append(repr(result))
        if self._connection is not None:
            await self._connection.close()


def _kind(body: bytes) -> str | None:
    try:
        return messages.parse(body).type
    except ValueError:
        return None
