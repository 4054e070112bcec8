"""The message bus: one small protocol, a RabbitMQ implementation and an in-process one.

Nothing outside this package imports aio-pika. Both implementations keep the same promises:
``publish`` returns only once the message is safely queued (a publisher confirm on RabbitMQ)
and raises ``PublishFailed`` when it cannot be; a handler's message is acknowledged only after
the handler returns; a handler that raises gets the message again, up to
``max_redeliveries`` times, after which it is dead-lettered.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from shared.messages import Message

Handler = Callable[[Message], Awaitable[None]]

# Routing keys, which are also the queue names (RabbitMQ prefixes them with the deployment's
# ``amqp_prefix``).
CONDUCTOR = "conductor"
REPORTS = "reports"
HEARTBEATS = "heartbeats"


def compute_queue(host: str) -> str:
    """The queue (and routing key) of the compute agent on ``host``."""
    return f"compute.{host}"


class PublishFailed(Exception):
    """The broker did not take the message: it is not queued and nobody will act on it."""


class Subscription(Protocol):
    async def cancel(self) -> None: ...


class Bus(Protocol):
    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def declare(self, queue: str) -> None:
        """Make sure ``queue`` exists and receives messages sent to the routing key ``queue``.

        A role declares the queues it publishes to, so that messages wait for a consumer
        that has not started yet instead of being refused.
        """
        ...

    async def publish(self, routing_key: str, message: Message) -> None: ...

    async def consume(self, queue: str, handler: Handler, *, prefetch: int = 16) -> Subscription:
        """Run ``handler`` on every message of ``queue``, at most ``prefetch`` at a time."""
        ...


__all__: Sequence[str] = (
    "CONDUCTOR",
    "HEARTBEATS",
    "REPORTS",
    "Bus",
    "Handler",
    "PublishFailed",
    "Subscription",
    "compute_queue",
)
