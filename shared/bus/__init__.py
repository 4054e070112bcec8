"""The message bus: one small protocol, a RabbitMQ implementation and an in-process one.

Nothing outside this package imports aio-pika. Both implementations keep the same promises:
``publish`` returns only once the message is safely queued (a publisher confirm on RabbitMQ)
and raises ``PublishFailed`` when it cannot be; a handler's message is acknowledged only after
the handler returns; a handler that raises gets the message again, up to
``max_redeliveries`` times, each after a longer wait (``retry_delay_s``), after which it is
dead-lettered.

Besides commands, a bus carries *calls*: a question whose sender waits for the answer
(``call``), to a responder that ``serve``s a queue of its own (``call_queue(host)`` for an
agent). Calls are for reads that change nothing (where a guest's console listens), so they
are sent at most once: not persisted, never redelivered nor dead-lettered, dropped when
nobody took them within the caller's timeout. The caller gets ``PublishFailed`` when no
responder ever served the queue, ``CallTimeout`` when no answer came in time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from shared.messages import Message

Handler = Callable[[Message], Awaitable[None]]
#: What a served queue's responder does with a call: the answer, sent back to the caller.
Responder = Callable[[Message], Awaitable[Message]]

# Routing keys, which are also the queue names (RabbitMQ prefixes them with the deployment's
# ``amqp_prefix``).
CONDUCTOR = "conductor"
REPORTS = "reports"
HEARTBEATS = "heartbeats"


def retry_delay_s(attempt: int) -> float:
    """The wait before a failed handler's message comes back for the ``attempt``-th time
    (0.5, 1, 2, 4 s...): a handler mostly fails because a dependency is briefly away
    (PostgreSQL restarting), and retries in quick succession would dead-letter the message
    before it is back."""
    return 0.5 * 2.0 ** (attempt - 1)


def compute_queue(host: str) -> str:
    """The queue (and routing key) of the compute agent on ``host``."""
    return f"compute.{host}"


def call_queue(host: str) -> str:
    """The queue of the calls the compute agent on ``host`` answers (its commands have
    ``compute_queue``: a call must not wait behind them, nor outlive its caller there)."""
    return f"calls.{host}"


class CallTimeout(Exception):
    """A call got no answer in time: the responder is away, slow, or could not answer."""


class PublishFailed(Exception):
    """The broker did not take the message: it is not queued and nobody will act on it."""


class Subscription(Protocol):
    async def cancel(self) -> None: ...


class Bus(Protocol):
    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    @property
    def is_connected(self) -> bool:
        """Is the connection to the broker open now? (readiness, shared/health.py)"""
        ...

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

    async def call(self, routing_key: str, message: Message, *, timeout_s: float) -> Message:
        """Send ``message`` to whoever serves ``routing_key`` and return the answer; raises
        ``PublishFailed`` (nobody serves it) or ``CallTimeout`` (no answer in ``timeout_s``)."""
        ...

    async def serve(self, queue: str, responder: Responder) -> Subscription:
        """Answer every call sent to ``queue`` with what ``responder`` returns; a responder
        that raises sends no answer (its caller's timeout tells)."""
        ...


__all__: Sequence[str] = (
    "CONDUCTOR",
    "HEARTBEATS",
    "REPORTS",
    "Bus",
    "CallTimeout",
    "Handler",
    "PublishFailed",
    "Responder",
    "Subscription",
    "call_queue",
    "compute_queue",
)
